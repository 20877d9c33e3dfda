"""Small measurements on a GPU that decide the next changes to the fit (not a benchmark of
the package): what a host sync, a kernel launch, a d x d copy to the host, a d x d
eigendecomposition and a d x d inverse cost on this card, at the GPU check's width.

* sync and launch: ``torch.cuda.synchronize`` after nothing, a 0-d read (``float``), and
  the dispatch of a tiny kernel (median of many);
* the copy of a (d, d) float64 matrix to the host (the fit's streaming curvature): a plain
  ``.cpu()`` (pageable), into page-locked memory, and page-locked then copied into an
  ordinary numpy array;
* ``eigh`` of a (d, d) Gram-like matrix in float64 and float32 (the calibration's basis
  leverage), with the float32 eigenvalues' error on the leverage's denominators;
* the inverse of that matrix: ``linalg.inv`` against the Cholesky route.

    python benchmarks/micro_gpu.py --out "$OUT/micro_gpu"
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402


def timed(fn, repeats, device):
    """Median milliseconds of ``fn()`` over ``repeats`` calls after one warm-up."""
    fn()
    torch.cuda.synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-features", type=int, default=4096)
    p.add_argument("--n-rows", type=int, default=40000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/micro_gpu")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("micro_gpu.py needs a CUDA GPU")
        return 1
    device = torch.device("cuda")
    d = args.n_features
    rows = []

    scalar = torch.ones((), device=device)
    small = torch.ones(8, device=device)
    rows.append(("synchronize after nothing", timed(lambda: None, 200, device)))
    rows.append(("read a 0-d tensor (float)", timed(lambda: float(scalar), 200, device)))

    def launches():
        for _ in range(100):
            small.mul_(1.0)

    rows.append(("100 tiny kernel launches", timed(launches, 20, device)))

    gen = torch.Generator(device=device).manual_seed(0)
    Z = torch.randn((args.n_rows, d), device=device, generator=gen, dtype=torch.float32)
    A = (Z.T @ Z).double() / 4 + torch.eye(d, device=device, dtype=torch.float64)
    del Z
    rows.append((f"({d}, {d}) float64 to the host, pageable (.cpu())",
                 timed(lambda: A.cpu().numpy(), args.repeats, device)))
    pinned = torch.empty((d, d), dtype=torch.float64, pin_memory=True)
    rows.append((f"({d}, {d}) float64 to page-locked memory",
                 timed(lambda: pinned.copy_(A), args.repeats, device)))
    rows.append((f"({d}, {d}) float64 to page-locked memory, then a numpy copy",
                 timed(lambda: pinned.copy_(A).numpy().copy(), args.repeats, device)))

    rows.append((f"eigh ({d}, {d}) float64", timed(lambda: torch.linalg.eigh(A), 3, device)))
    A32 = A.float()
    rows.append((f"eigh ({d}, {d}) float32", timed(lambda: torch.linalg.eigh(A32), 3, device)))
    a64 = torch.linalg.eigvalsh(A)
    a32 = torch.linalg.eigvalsh(A32).double()
    alpha = 1.0
    denominator_error = float(((a32 - a64).abs() / (a64.clamp(min=0) + alpha)).max())
    rows.append(("float32 eigenvalues: max |error| / (a_k + alpha), alpha = 1",
                 denominator_error))
    rows.append((f"inv ({d}, {d}) float64", timed(lambda: torch.linalg.inv(A), 3, device)))

    def cholesky_inverse():
        factor, _ = torch.linalg.cholesky_ex(A)
        return torch.cholesky_inverse(factor)

    rows.append((f"Cholesky inverse ({d}, {d}) float64", timed(cholesky_inverse, 3, device)))
    table = pd.DataFrame(rows, columns=["measurement", "ms (or ratio)"])
    text = (f"micro measurements on {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
            "\n\n" + table.to_markdown(index=False, floatfmt=".4g"))
    write_report(args.out, text, {"rows": rows, "gpu": torch.cuda.get_device_name(0)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
