"""t5tune: FLAN-style instruction tuning of T5 encoder-decoder models in JAX/Flax NNX."""
import setuptools

# Ranges are the ones this project is tested with (see docs/install.md, "Versions").
# The upper bounds are there because flax NNX, orbax and jax sharding APIs move
# between minor releases; widen them only after the suite passes.
INSTALL_REQUIRES = [
    "jax>=0.10.2,<0.11",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    # T5X checkpoint import: TensorStore zarr arrays, and gin's parser for config.gin.
    "tensorstore>=0.1.86,<0.2",
    "gin-config>=0.5,<0.6",
    "seqio==0.0.20",
    # seqio imports tensorflow and tensorflow_text; the CPU build is enough for
    # the input pipeline (it never touches the accelerator).
    "tensorflow-cpu>=2.21,<2.22",
    "tensorflow-text>=2.21,<2.22",
    "tensorflow-datasets>=4.9.10,<4.10",
    "importlib_resources",  # tensorflow-datasets 4.9.10 imports it
    "sentencepiece>=0.2,<0.3",
    "ml-collections>=1.1,<2",
    "absl-py>=2.1",
    "safetensors>=0.6",
    "numpy>=2.0",
    # jax's and TensorFlow's extension dtypes. 0.7.0 registers its numpy promoters one by one
    # (quadratic in numpy 2.4's loop list): importing it takes 0.60 s instead of 0.065 s for
    # 0.6.0, in every process that imports jax or TensorFlow (`python -X importtime -c
    # "import ml_dtypes"`, 2-core Xeon, numpy 2.4.6). jax needs >=0.5, TensorFlow >=0.5.1.
    "ml-dtypes>=0.5.1,<0.7",
    # TensorBoard event files without TensorFlow (t5tune/train/tb.py); TF 2.21 no longer pulls it in.
    "tensorboard>=2.21,<2.22",
    "rouge-score>=0.1.2",
    "datasketch>=1.6,<3",  # MinHash/LSH near-duplicates (t5tune.quality.neardup)
    "cleanlab>=2.6,<3",  # confident learning on option scores (t5tune.quality.label_issues)
    "sacrebleu>=2.4",
    # mimalloc's shared library as a wheel: the allocator t5tune preloads on
    # Linux (t5tune/allocator.py) so a fresh install gets it without apt-get.
    "cmeel-mimalloc>=3.4,<4; sys_platform == 'linux' and platform_machine == 'x86_64'",
    "scikit-learn>=1.5",
    "scipy>=1.15,<2",  # t5tune.infer.compare: bootstrap intervals, exact McNemar
    "tqdm>=4.66",
    "matplotlib>=3.8",
    # t5tune serve: Starlette on uvicorn (Starlette, not FastAPI: see t5tune/serve/app.py),
    # pydantic request validation, the maintained Prometheus client.
    "starlette>=1.10,<2",
    "uvicorn>=0.54,<0.55",
    "pydantic>=2.14,<3",
    "prometheus-client>=0.26,<0.27",
    # `t5tune harness` / t5tune.infer.harness: lm-evaluation-harness (MMLU, BBH, ...) with a t5tune
    # backend; its task API moves between minor releases.
    "lm-eval>=0.4.13,<0.5",
]

# The documentation site (`make docs`, tests/docs/): MkDocs with the Material theme, the API
# reference from docstrings by mkdocstrings (griffe reads the source: nothing is imported).
DOCS = [
    "mkdocs>=1.6,<1.7",
    "mkdocs-material>=9.5,<10",
    "mkdocstrings[python]>=0.26,<2",
    "pymdown-extensions>=10",
]

# `t5tune data cache` (t5tune/data/cache.py): seqio's Beam transforms on Apache Beam. Beam 2.78 caps
# protobuf below 7, so pip moves TensorFlow's protobuf (7.x) back to 6.33.x, inside TF 2.21's range;
# sentencepiece 0.2.3's generated model proto demands protobuf >= 7.36.1 at import (seqio then
# fails to import), 0.2.1 imports with 6.33. Checked here: `import tensorflow, seqio, t5tune`.
BEAM = [
    "apache-beam[tfrecord]>=2.78,<2.79",  # [tfrecord]: crcmod, the TFRecord checksums
    "protobuf>=6.33,<7",
    # Exactly 0.2.1, the version the whole suite passed with: the tests' SentencePiece fixtures are
    # trained at test time, and 0.2.2 trains another vocabulary on which the tiny model of
    # tests/infer/test_harness.py generates only empty BBH answers (fresh-clone CI, 2026-12-08).
    "sentencepiece==0.2.1",
]

EXTRAS = {
    # The numerical reference: Hugging Face transformers' PyTorch T5 on the CPU.
    # torch is pinned: an unpinned torch requirement pulls a multi-GB CUDA build.
    "test": [
        "pytest>=8",
        "pytest-xdist>=3.6",  # --no-loadscope-reorder (the Makefile's test target)
        "torch==2.13.0",
        "transformers>=5.0,<6",
        "nbclient>=0.10",
        "nbformat>=5.10",
        "ipykernel>=6",
        # tests/serve and benchmarks/serve.py: HTTP clients, and FastAPI for the transformers peer
        "httpx>=0.28,<0.29",
        "openai>=3.51,<4",
        "fastapi>=0.163,<0.164",
        # tests/infer/test_harness.py: the harness's own Hugging Face backend (the parity peer) needs it
        "accelerate>=1.0",
        # tests/train/test_tpu_targets.py: the TPU compiler (libtpu, the version jax[tpu] pins
        # for this jax), so CI compiles every program for Cloud TPU slices without a TPU.
        "jax[tpu]>=0.10.2,<0.11",
        *DOCS,  # tests/docs/ build the site
        *BEAM,  # tests/data/test_cache.py runs the cache pipeline on DirectRunner
    ],
    "beam": BEAM,
    "docs": DOCS,
    "gpu": ["jax[cuda12]>=0.10.2,<0.11"],
    # A TPU VM's runtime, and `t5tune info --plan --target=v5e-8` (compile-only TPU devices) on any host.
    "tpu": ["jax[tpu]>=0.10.2,<0.11"],
    # `t5tune info --plan --target=h100-8` on a host without a GPU: jax's CUDA compiler plugin
    # alone (no CUDA libraries; ~180 MB), which compiles for compile-only H100 devices.
    "gpu-aot": ["jax-cuda12-pjrt>=0.10.2,<0.11", "jax-cuda12-plugin>=0.10.2,<0.11"],
}

setuptools.setup(
    name="t5tune",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["t5tune", "t5tune.*"]),
    package_data={"t5tune": ["demo_data/*.jsonl"]},  # the demo tasks' files
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["t5tune=t5tune.main:run"]},
    license="Apache-2.0",
)
