# emopillars on the official vLLM image, which brings CUDA, PyTorch and vLLM. The tag is the
# version that the `vllm` extra in pyproject.toml pins (tests/test_docker.py checks they agree).
FROM vllm/vllm-openai:v0.33.0

# Caches go to volumes, never into the image, and nothing secret is baked in: the Hugging Face
# token is passed when the container starts (docker run -e HF_TOKEN). XDG_CACHE_HOME and
# TRITON_CACHE_DIR keep vLLM's and Triton's caches writable under any --user.
ENV HF_HOME=/cache/huggingface \
    XDG_CACHE_HOME=/cache \
    TRITON_CACHE_DIR=/cache/triton \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/emopillars
COPY pyproject.toml README.md ./
COPY pipeline/ pipeline/
COPY prompts/ prompts/
COPY corpora/sample/ corpora/sample/

# The project and its runtime dependencies, without the test tools. The `vllm` extra pins the
# image's own vLLM version, so pip keeps it (and would stop if the two disagreed); the `train`
# extra (`emopillars train`/`evaluate`) asks only for what the image's CUDA torch and
# transformers already are. The embedded CPU engine (llama-cpp-python) builds from source,
# with the lean build flags.
RUN CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
    python3 -m pip install --no-cache-dir "./[vllm,train]"

# A numeric non-root user, so that Kubernetes' runAsNonRoot can check it. /cache is open to
# every user (sticky, like /tmp) for runs with `docker run --user "$(id -u):$(id -g)"`.
RUN useradd --no-log-init --create-home --uid 10001 --user-group emopillars \
    && mkdir -p /outputs /cache/huggingface \
    && chown -R 10001:10001 /outputs /cache \
    && chmod 1777 /cache
USER 10001:10001
VOLUME ["/outputs", "/cache/huggingface"]
WORKDIR /outputs

ENTRYPOINT ["emopillars"]
CMD ["--help"]
