# Sourced by scripts/gpu_board.sh and benchmarks/gpu_check.sh (needs $PY): makes this checkout
# importable and Fashion-MNIST findable on a lent, offline machine.
if ! $PY -c "import ssl_bench.methods, ssl_bench.evaluators, ssl_bench.datasets" 2>/dev/null; then
  # offline machines: no build isolation (setuptools and wheel must be there), no dependencies
  # (else: the three plugin folders linked into the package, as the install maps them)
  $PY -m pip install -q --no-deps --no-build-isolation --no-index -e . ||
    { ln -sfn ../methods ssl_bench/methods && ln -sfn ../evaluators ssl_bench/evaluators &&
      ln -sfn ../datasets ssl_bench/datasets; }
  $PY -c "import ssl_bench.methods, ssl_bench.evaluators, ssl_bench.datasets" || { echo "cannot import ssl-bench"; exit 2; }
fi
# a machine without the Debian package: the IDX files carried in .data/fashion-mnist/
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -d .data/fashion-mnist ]; then
  export SSL_BENCH_DATA=${SSL_BENCH_DATA:-$PWD/.data}
fi
