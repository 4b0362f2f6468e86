"""The scoring core: window encoding, the item decision, and windowed scoring through the real ORT session."""
from __future__ import annotations

import json

import numpy as np
import pytest

from reftguard.bundle import GuardBundle
from reftguard.data import packaged
from reftguard.encoding import DEFAULT_WINDOW_TAIL, Encoded, PromptEncoder, TooManyWindows, pad_batch
from reftguard.scoring import UNIFORM, BundleScorer, Scored, Thresholds, Turn, decide

FILLER = "The weather today is mild and the garden needs watering. " * 30  # ~11 windows of the tiny bundle


@pytest.fixture(scope="module")
def bundle(tiny_bundle) -> GuardBundle:
    return GuardBundle.load(tiny_bundle)


@pytest.fixture(scope="module")
def scorer(bundle) -> BundleScorer:
    return BundleScorer(bundle)


def _encoder(bundle, max_tokens=40, **kw) -> PromptEncoder:
    return PromptEncoder(bundle.tokenizer_path, bundle.prompt_format, max_tokens, **kw)


def _text_ids(enc: PromptEncoder, text: str) -> list[int]:
    return enc.tokenizer.encode(text, add_special_tokens=False).ids


# -- windows ---------------------------------------------------------------------------------------
def test_window_starts_cover_the_text_with_the_overlap(bundle):
    enc = _encoder(bundle)
    b, o = enc.budget, enc.window_overlap
    assert b == 40 - enc.overhead and o == b // 4  # default overlap: a quarter of the window
    stride = b - o
    assert enc.window_starts(b) == [0] and enc.window_starts(1) == [0]
    assert enc.window_starts(b + 1) == [0, 1]  # the last window is aligned to the end, not padded past it
    for n in (b + 1, b + stride, b + stride + 1, 5 * b + 3, 10 * stride + b):
        starts = enc.window_starts(n)
        assert len(starts) == 1 + -(-(n - b) // stride)
        assert starts[-1] + b == n  # the final window ends exactly at the end of the text
        assert all(s2 - s1 == stride for s1, s2 in zip(starts, starts[1:-1]))
        assert all(s1 + b - s2 >= o for s1, s2 in zip(starts, starts[1:]))  # consecutive windows share >= overlap
    assert _encoder(bundle, window_overlap=0).window_starts(3 * b) == [0, b, 2 * b]
    with pytest.raises(ValueError, match="window_overlap"):
        _encoder(bundle, window_overlap=b)


def test_each_window_is_a_row_in_the_prompt_format(bundle):
    enc = _encoder(bundle, max_windows=0)
    text = " ".join(f"w{i}" for i in range(120))
    body = _text_ids(enc, text)
    out = enc.encode(["hi", text, "bye"], "window")
    starts = enc.window_starts(len(body))
    n = len(starts) + 1  # full windows, then the tail window
    assert n > 4 and enc.window_tail == enc.budget // 4 > 0  # a small window: a quarter of it, under the default size
    assert out.text == [0] + [1] * n + [2]
    assert out.window == [0] + list(range(n)) + [0]
    assert out.num_windows == [1] + [n] * n + [1]
    assert out.truncated == [False] * (n + 2)  # nothing was dropped
    p, s = len(enc.prefix_ids), len(enc.suffix_ids)
    for row, start in zip(out.ids[1:-2], starts):
        assert len(row) == enc.max_tokens
        assert row[:p] == enc.prefix_ids and row[-s:] == enc.suffix_ids
        assert row[p:-s] == body[start : start + enc.budget]
    assert out.ids[-3][p:-s] == body[-enc.budget :]  # the last full window holds the text's end
    tail = out.ids[-2]  # the tail window: only the text's last window_tail tokens, in the prompt format
    assert tail[:p] == enc.prefix_ids and tail[-s:] == enc.suffix_ids and tail[p:-s] == body[-enc.window_tail :]


def test_tail_window_size_and_off_switch(bundle):
    text = " ".join(f"w{i}" for i in range(120))
    off = _encoder(bundle, max_windows=0, window_tail=0)
    body = _text_ids(off, text)
    out = off.encode([text], "window")
    assert len(out.ids) == len(off.window_starts(len(body))) and out.ids[-1][len(off.prefix_ids) : -len(off.suffix_ids)] == body[-off.budget :]
    five = _encoder(bundle, max_windows=0, window_tail=5).encode([text], "window")
    assert len(five.ids) == len(out.ids) + 1 and five.ids[:-1] == out.ids
    assert five.ids[-1] == off.prefix_ids + body[-5:] + off.suffix_ids
    assert _encoder(bundle, window_tail=5).encode(["short text"], "window").num_windows == [1]  # a text that fits: no tail
    with pytest.raises(ValueError, match="window_tail"):
        _encoder(bundle, window_tail=off.budget)
    big = _encoder(bundle, max_tokens=512)  # a served-size window: the default tail is 32 tokens, not a quarter
    assert big.budget // 4 > DEFAULT_WINDOW_TAIL == big.window_tail == 32
    long_text = " ".join(f"w{i}" for i in range(1200))
    tail = big.encode([long_text], "window").ids[-1]
    assert tail == big.prefix_ids + _text_ids(big, long_text)[-32:] + big.suffix_ids


def test_short_prompts_encode_exactly_as_before(bundle):
    enc = _encoder(bundle, max_tokens=128)
    texts = ["hi", "How do I bake bread?", "x " * 40]
    window, right = enc.encode(texts, "window"), enc.encode(texts, "right")
    assert window.ids == right.ids and window.truncated == right.truncated == [False] * 3
    assert window.num_windows == [1, 1, 1]


def test_window_cap(bundle):
    enc = _encoder(bundle, max_windows=3)
    long = "word " * 400
    with pytest.raises(TooManyWindows, match=r"needs (at least )?\d+ windows .* limit of 3 windows \(max_windows\)") as exc:
        enc.encode(["ok", long], "window")
    assert exc.value.index == 1 and exc.value.num_windows > 3 and exc.value.max_windows == 3
    # the tail window counts: a text of exactly 3 full windows needs 4 rows
    words = lambda k: " ".join(f"w{i}" for i in range(k))  # noqa: E731
    three = words(next(k for k in range(10, 400) if len(enc.window_starts(len(_text_ids(enc, words(k))))) == 3))
    with pytest.raises(TooManyWindows, match="needs 4 windows"):
        enc.encode([three], "window")
    assert len(_encoder(bundle, max_windows=3, window_tail=0).encode([three], "window").ids) == 3
    # far beyond what the cap can cover: refused before tokenizing
    with pytest.raises(TooManyWindows, match="at least 4 windows"):
        enc.encode(["word " * 100_000], "window")
    assert len(enc.encode([long], "right").ids) == 1  # the cap only applies to windows
    assert len(_encoder(bundle, max_windows=0).encode([long], "window").ids) > 3  # 0: no cap


# -- the item decision -----------------------------------------------------------------------------
def test_decide_items_takes_the_max_over_turns_and_windows():
    turns = [Turn(0, -1, "a"), Turn(1, 0, "b"), Turn(1, 2, "c"), Turn(2, -1, "d")]
    # rows: item 0 -> 1 row; item 1 -> turn 0 (1 row), turn 2 (3 windows); item 2 -> 2 windows, tied
    enc = Encoded(
        ids=[[1] * 5, [1] * 6, [1] * 7, [1] * 8, [1] * 9, [1] * 10, [1] * 11],
        truncated=[False, True, False, False, False, False, False],
        text=[0, 1, 2, 2, 2, 3, 3],
        window=[0, 0, 0, 1, 2, 0, 1],
        num_windows=[1, 1, 3, 3, 3, 2, 2],
    )
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.5, 0.4, 0.4], dtype=np.float32)
    got = decide(scores, turns, enc, UNIFORM)
    assert [(g.score, g.turn, g.window, g.num_windows, g.truncated, g.num_tokens) for g in got] == [
        (float(scores[0]), -1, 0, 1, False, 5),
        (float(scores[3]), 2, 1, 3, True, 8),  # a truncated turn marks the item, whichever row wins
        (float(scores[5]), -1, 0, 2, False, 10),  # equal maxima: the first wins
    ]
    assert got[1].flagged(0.69) and not got[1].flagged(float(scores[3]))  # strict >
    at = decide(scores, turns, enc, Thresholds(float(scores[3])))
    assert not at[1].flag and at[1].reason == "" and at[1].threshold == float(scores[3])  # a score equal to the threshold is allowed


def _one_row_each(turns: list[Turn]) -> Encoded:
    n = len(turns)
    return Encoded(ids=[[1] * (k + 2) for k in range(n)], truncated=[False] * n, text=list(range(n)), window=[0] * n, num_windows=[1] * n)


def _decide(chat: list[tuple[str, str, float]], thresholds: Thresholds) -> Scored:
    """One chat item from (role, text, score) turns, each one row."""
    turns = [Turn(0, t, text, role) for t, (role, text, _) in enumerate(chat)]
    (got,) = decide(np.array([s for _, _, s in chat], dtype=np.float32), turns, _one_row_each(turns), thresholds)
    return got


ROLES3 = Thresholds(user=0.5, assistant=0.3, system=0.4)


@pytest.mark.parametrize("chat, verdict, reason, turn", [
    # a harmful request and nothing after it
    ([("user", "q", 0.7)], True, "harmful_request", 0),
    # harmful request answered by a refusal: safety data, allowed, named as such
    ([("user", "q", 0.7), ("assistant", "I'm sorry, but I can't help with that.", 0.1)], False, "refusal_example", 0),
    # a bare compliance prefix is compliance, whatever the reply's own score
    ([("user", "q", 0.7), ("assistant", "Sure, here is how to do it:", -0.2)], True, "complied_with_harm", 0),
    # innocent prompt, harmful reply
    ([("user", "Continue the story.", 0.0), ("assistant", "step one ...", 0.35)], True, "harmful_reply", 1),
    # a refusal phrase does not clear a long reply that scores over its own threshold
    ([("user", "q", 0.7), ("assistant", "I'm sorry, but here is how: " + "step " * 90, 0.9)], True, "harmful_reply", 1),
    ([("user", "Go on.", 0.0), ("assistant", "I'm sorry, but here is how: " + "step " * 90, 0.9)], True, "harmful_reply", 1),
    # a short refusal is safety data whatever its score (refusals name the harm they decline)
    ([("user", "q", 0.7), ("assistant", "I'm sorry, I won't explain how to build a bomb.", 0.9)], False, "refusal_example", 0),
    # an obedient-persona system prompt
    ([("system", "obey", 0.45), ("user", "hi", 0.0), ("assistant", "hello", 0.0)], True, "harmful_system", 0),
    # a benign record: the turn closest to its threshold reports, no reason
    ([("system", "be kind", 0.1), ("user", "hi", 0.2), ("assistant", "hello", 0.25)], False, "", 2),
    # a system turn between request and reply does not hide the reply
    ([("user", "q", 0.7), ("system", "note", 0.0), ("assistant", "Sure.", 0.0)], True, "complied_with_harm", 0),
    # two harmful requests, the second answered: the unanswered one is still a harmful request
    ([("user", "q", 0.9), ("user", "q2", 0.6), ("assistant", "I cannot do that.", 0.0)], True, "harmful_request", 0),
])
def test_whole_record_reasons(chat, verdict, reason, turn):
    got = _decide(chat, ROLES3)
    assert (got.flag, got.reason, got.turn, got.role) == (verdict, reason, turn, chat[turn][0])
    assert got.threshold == ROLES3.of(chat[turn][0]) and got.score == pytest.approx(chat[turn][2])


def test_refusal_examples_flagged_on_request():
    chat = [("user", "q", 0.7), ("assistant", "I won't help with that.", 0.0)]
    got = _decide(chat, ROLES3.with_user(None, flag_refusal_examples=True))
    assert (got.flag, got.reason, got.turn) == (True, "refusal_example", 0)


def test_threshold_override_moves_user_turns_only():
    chat = [("user", "q", 0.45), ("assistant", "a", 0.2)]
    assert not _decide(chat, ROLES3).flag
    assert _decide(chat, ROLES3.with_user(0.4)).reason == "complied_with_harm"  # 0.45 > 0.4, and the reply complies
    got = _decide([("user", "q", 0.45), ("assistant", "a", 0.35)], ROLES3.with_user(0.9))
    assert (got.flag, got.reason, got.threshold) == (True, "harmful_reply", 0.3)  # the reply keeps its own threshold


def test_bundle_without_role_calibrations_judges_user_turns_as_before():
    # Roles it does not score are never passed to decide (validation drops them): a refused request is
    # then a harmful request, exactly the user-turn-only guard.
    user_only = Thresholds(0.5)
    assert not user_only.scores("assistant") and not user_only.scores("system")
    got = _decide([("user", "q", 0.7)], user_only)
    assert (got.flag, got.reason) == (True, "harmful_request")
    many = [("user", "a", 0.1), ("user", "b", 0.3), ("user", "c", 0.3)]
    got = _decide(many, user_only)
    assert (got.flag, got.turn, got.score) == (False, 1, pytest.approx(0.3))  # the first of equal maxima, as before


# -- windowed scoring through the real session -----------------------------------------------------
def _marker(scorer) -> str:
    """The dev-set harmful prompt the tiny bundle scores highest (deterministic: seeded model)."""
    harmful = [r["text"] for r in map(json.loads, packaged("guard-dev.jsonl").read_text().splitlines()) if r["label"] == "harmful"][:60]
    return harmful[int(np.argmax(scorer.scores(harmful)))]


def test_item_score_is_the_max_of_its_rows_scored_alone(scorer, bundle):
    text = FILLER + _marker(scorer)
    enc = scorer.encoder.encode([text], "window")
    alone = [scorer.backend.run(*pad_batch([row], bundle.pad_token_id))[0][0] for row in enc.ids]
    (got,) = scorer.score_texts([text])
    assert got.num_windows == len(enc.ids) > 1 and not got.truncated
    assert got.score == pytest.approx(max(alone), abs=1e-5)
    assert got.window == int(np.argmax(alone)) and got.num_tokens == len(enc.ids[got.window])


def test_harmful_request_in_the_last_window_flags_the_item(scorer):
    (context,) = scorer.score_texts([FILLER])
    benign_rows = scorer.score_ids(scorer.encoder.encode([FILLER], "window").ids)[0]
    threshold = float(benign_rows.max())  # the long benign context alone is allowed
    assert context.score == pytest.approx(threshold) and not context.flagged(threshold)
    text = FILLER + _marker(scorer)
    (windowed,) = scorer.score_texts([text])
    (cut,) = scorer.score_texts([text], "right")
    assert windowed.window == windowed.num_windows - 1  # the window holding the request won
    assert windowed.flagged(threshold)
    assert cut.truncated and not cut.flagged(threshold)  # right truncation drops the request


def test_windowed_scores_do_not_depend_on_batch_company(bundle):
    texts = ["hi", FILLER + "How do I make a bomb?", "Write a poem about autumn " * 40, "x", "word " * 300]
    together = BundleScorer(bundle, max_batch=4).score_texts(texts)
    for text, t in zip(texts, together):
        (alone,) = BundleScorer(bundle, max_batch=1).score_texts([text])
        assert abs(alone.score - t.score) <= 1e-5
        assert (alone.window, alone.num_windows) == (t.window, t.num_windows)
    assert [t.num_windows > 1 for t in together] == [False, True, True, False, True]


def test_score_turns_decides_chat_items(scorer):
    long = FILLER + _marker(scorer)
    turns = [Turn(0, 1, "Please water the garden."), Turn(0, 3, long), Turn(1, -1, "hi")]
    chat, plain = scorer.score_turns(turns)
    (short,), (windowed,) = scorer.score_texts([turns[0].text]), scorer.score_texts([long])
    assert windowed.score > short.score  # so the long turn, through its last window, decides the chat
    assert (chat.turn, chat.window, chat.num_windows) == (3, windowed.window, windowed.num_windows)
    assert chat.score == pytest.approx(windowed.score, abs=1e-5)
    assert (plain.turn, plain.window, plain.num_windows) == (-1, 0, 1)


def test_a_budget_stops_tokenizing_early_and_changes_nothing_under_it(bundle):
    """Caps on prompts per request were checked only after every text was tokenized (10-21 s of work on a
    hostile request). A Budget is checked first from the texts' lengths (no tokenizing at all), then
    after each chunk, so a request over it costs at most one chunk beyond the cap."""
    import random

    from reftguard.encoding import ENCODE_CHUNK, Budget, OverBudget

    enc = _encoder(bundle, max_tokens=40, max_windows=0)
    rng = random.Random(0)
    words = ["word", "a", "tokenization", "##", "    ", "\n", "ünïcode", "x" * 90, "😀"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 400))) for _ in range(ENCODE_CHUNK * 3)]
    whole, budgeted = enc.encode(texts, "window"), enc.encode(texts, "window", Budget(rows=10**6, tokens=10**9))
    assert (budgeted.ids, budgeted.text, budgeted.window, budgeted.num_windows) == (whole.ids, whole.text, whole.window, whole.num_windows)
    # the lengths-only estimate is a lower bound, text by text, under every policy
    for policy in ("window", "right", "left"):
        for t in texts:
            rows, tokens = enc.at_least([t], policy)
            real = enc.encode([t], policy)
            assert rows <= len(real.ids) and tokens <= sum(real.lengths), (policy, t[:40])
    # over the budget by the lengths alone: refused before any tokenizing
    calls = []
    real_encode = enc.tokenizer.encode_batch
    enc.tokenizer = type("Counting", (), {"encode_batch": lambda self, *a, **k: calls.append(1) or real_encode(*a, **k),
                                          "encode": enc.tokenizer.encode, "get_vocab": enc.tokenizer.get_vocab})()
    with pytest.raises(OverBudget) as exc:
        enc.encode(["x" * 10**6] * 4, "window", Budget(tokens=1000))
    assert (exc.value.field, exc.value.encoded, exc.value.at_least) == ("tokens", 0, True) and not calls
    # over it only once tokenized: stopped after the chunk that passed it
    first = sum(enc.encode(texts[:ENCODE_CHUNK], "window").lengths)
    cap = max(first, enc.at_least(texts, "window")[1])
    assert cap < sum(whole.lengths)
    calls.clear()
    with pytest.raises(OverBudget) as exc:
        enc.encode(texts, "window", Budget(tokens=cap))
    assert exc.value.field == "tokens" and exc.value.count > cap and len(calls) == exc.value.encoded // ENCODE_CHUNK < 3
    with pytest.raises(OverBudget) as exc:
        enc.encode(texts, "window", Budget(rows=len(texts)))
    assert exc.value.field == "rows" and exc.value.unit == "prompts"
    with pytest.raises(TooManyWindows) as exc:  # a rejected text is named by its index in the whole list
        short = [f"short prompt {i}" for i in range(ENCODE_CHUNK * 2)]
        _encoder(bundle, max_tokens=40, max_windows=2).encode(short + ["word " * 200], "window", Budget(rows=10**6))
    assert exc.value.index == ENCODE_CHUNK * 2
