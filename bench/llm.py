"""Language-model pruning: secateurs' one-shot pruners beside llm-compressor and Torch-Pruning.

Every comparison runs on the same dense models, calibration windows and validation text: tiny
causal LMs trained here on the embedded corpus (``dataset=text``, byte-level), cached under
``outputs/bench_llm/`` as ``save_pretrained`` folders.

* ``table``: dense, random, magnitude, Wanda, SparseGPT x 50 %, 70 %, 2:4, 4:8 x seeds
  (the seed draws the calibration windows and random's scores); validation perplexity.
* ``peers``: llm-compressor 0.14's ``SparseGPTModifier`` / ``WandaPruningModifier`` at 50 % and 2:4
  on the same windows (``oneshot`` with a DataLoader of them): perplexity and wall time of each
  side, interleaved, and the ratio (target: ours within 1 %).
* ``speed``: SparseGPT on a ~100 M-parameter Llama-style model (random weights: time does not
  depend on them), ours vs llm-compressor, interleaved (target: ours no slower).
* ``structured``: heads / FFN channels / experts at 25 and 50 % (Wanda / router scores), with and
  without a short fine-tune or distillation from the dense model.
* ``torch_pruning``: Torch-Pruning 1.6.1 pruning the same heads/FFN widths: perplexity, and
  whether its pruned model equals the original with the removed units zeroed.

    .venv/bin/python bench/llm.py train               # the dense models (cached)
    .venv/bin/python bench/llm.py table peers --seeds 0 1 2
    .venv/bin/python bench/llm.py speed --repeats 3
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, median, print_header

from framework.analysis.perplexity import perplexity
from framework.data.text import ByteTokenizer, Text
from framework.models.causal_lm import causal_lm
from framework.pruning.llm import make_spec, prune_llm

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "outputs" / "bench_llm"
BLOCK = 128
DENSE = {
    # the model=causal_lm preset (Llama-style, grouped-query attention): 0.79 M parameters
    "llama": dict(
        architecture="llama", hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=344
    ),
    # the mixture preset: 4 experts, 2 per token
    "mixtral": dict(
        architecture="mixtral",
        hidden_size=128,
        num_layers=4,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=172,
        num_experts=4,
        experts_per_token=2,
    ),
}
PATTERNS = {
    "50%": dict(final_sparsity=0.5),
    "70%": dict(final_sparsity=0.7),
    "2:4": dict(structure="nm", n=2, m=4),
    "4:8": dict(structure="nm", n=4, m=8),
}


def text_splits():
    return Text(block_size=BLOCK).load()


def train(model, splits, steps: int, lr: float, teacher=None, seed: int = 0, log_every: int = 50) -> None:
    """AdamW with a cosine schedule over ``steps`` batches of 32 blocks; with ``teacher``, the loss
    is the KL to its next-token distribution (temperature 1) plus the cross-entropy."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    loader = torch.utils.data.DataLoader(splits.train, batch_size=32, shuffle=True, drop_last=True)
    model.train()
    step = 0
    while step < steps:
        for inputs, targets in loader:
            logits = model(input_ids=inputs).logits.reshape(-1, 256)
            loss = torch.nn.functional.cross_entropy(logits, targets.reshape(-1))
            if teacher is not None:
                with torch.no_grad():
                    reference = teacher(input_ids=inputs).logits.reshape(-1, 256)
                loss = loss + torch.nn.functional.kl_div(
                    logits.log_softmax(-1), reference.log_softmax(-1), log_target=True, reduction="batchmean"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step % log_every == 0:
                print(f"  step {step}/{steps} loss {loss.item():.3f}", file=sys.stderr, flush=True)
            if step >= steps:
                break
    model.eval()


def dense_folder(name: str, steps: int) -> Path:
    folder = CACHE / f"dense_{name}_{steps}"
    if not (folder / "config.json").is_file():
        print(f"training dense {name} for {steps} steps ...", file=sys.stderr, flush=True)
        torch.manual_seed(0)
        model = causal_lm(**DENSE[name])
        train(model, text_splits(), steps, lr=3e-3)
        model.save_pretrained(folder)
        ByteTokenizer().as_pretrained().save_pretrained(folder)
    return folder


def load(folder: Path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    if model.config.model_type == "mixtral":
        model.set_experts_implementation("eager")
    return model


def evaluate(model, splits, batches: int) -> float:
    return perplexity(model, splits.val, batch_size=16, max_batches=batches)


def ours(model, method: str, pattern: dict, samples: torch.Tensor, seed: int = 0) -> float:
    spec = make_spec(dict(method=method, seed=seed, **pattern))
    start = time.perf_counter()
    prune_llm(model, spec, samples if method in ("wanda", "sparsegpt", "router") else None)
    return time.perf_counter() - start


def llm_compressor(folder: Path, method: str, pattern: dict, samples: torch.Tensor):
    """llm-compressor's modifier on the model in ``folder`` with ``samples`` as its calibration set."""
    from llmcompressor import oneshot
    from loguru import logger

    logger.disable("llmcompressor")  # its per-layer INFO lines would bury the tables
    from llmcompressor.modifiers.pruning import WandaPruningModifier
    from llmcompressor.modifiers.pruning.sparsegpt import SparseGPTModifier

    structure = f"{pattern['n']}:{pattern['m']}" if pattern.get("structure") == "nm" else "0:0"
    sparsity = (pattern["m"] - pattern["n"]) / pattern["m"] if structure != "0:0" else pattern["final_sparsity"]
    modifier = {"sparsegpt": SparseGPTModifier, "wanda": WandaPruningModifier}[method]
    recipe = modifier(
        sparsity=sparsity, mask_structure=structure, targets=["Linear"], ignore=["re:.*lm_head", "re:.*mlp.gate$"]
    )
    rows = [{"input_ids": s, "attention_mask": torch.ones_like(s)} for s in samples]
    loader = torch.utils.data.DataLoader(rows, batch_size=1)
    model = load(folder)
    start = time.perf_counter()
    oneshot(model=model, dataset=loader, recipe=[recipe], num_calibration_samples=len(samples))
    return model, time.perf_counter() - start


def table(args) -> None:
    splits = text_splits()
    model_folder = dense_folder("llama", args.steps)
    dense = evaluate(load(model_folder), splits, args.val_batches)
    rows = [["dense", "-", f"{dense:.3f}", "", ""]]
    for label, pattern in PATTERNS.items():
        for method in ("random", "magnitude", "wanda", "sparsegpt"):
            values = []
            for seed in args.seeds:
                model = load(model_folder)
                ours(model, method, pattern, splits.train.random_windows(args.samples, seed), seed)
                values.append(evaluate(model, splits, args.val_batches))
            mean = sum(values) / len(values)
            std = (sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)) ** 0.5
            rows.append(
                [
                    method,
                    label,
                    f"{mean:.3f} ± {std:.3f}",
                    " / ".join(f"{v:.3f}" for v in values),
                    f"{mean / dense:.3f}",
                ]
            )
            print(rows[-1], file=sys.stderr, flush=True)
    print(
        f"llama GQA 0.79 M parameters, {args.steps} training steps; {args.samples} calibration windows of {BLOCK} tokens"
    )
    print(markdown_table(["method", "sparsity", "perplexity (mean ± std)", "per seed", "vs dense"], rows))


def peers(args) -> None:
    splits = text_splits()
    folder = dense_folder("llama", args.steps)
    rows = []
    for label in ("50%", "2:4"):
        for method in ("sparsegpt", "wanda"):
            for seed in args.seeds:
                samples = splits.train.random_windows(args.samples, seed)
                model = load(folder)
                our_time = ours(model, method, PATTERNS[label], samples)
                our_ppl = evaluate(model, splits, args.val_batches)
                their_model, their_time = llm_compressor(folder, method, PATTERNS[label], samples)
                their_ppl = evaluate(their_model, splits, args.val_batches)
                same_mask = all(
                    torch.equal(a == 0, b == 0)
                    for a, b in zip(model.state_dict().values(), their_model.state_dict().values())
                )
                rows.append(
                    [
                        method,
                        label,
                        seed,
                        f"{our_ppl:.4f}",
                        f"{their_ppl:.4f}",
                        f"{our_ppl / their_ppl:.4f}",
                        f"{our_time:.2f}",
                        f"{their_time:.2f}",
                        same_mask,
                    ]
                )
                print(rows[-1], file=sys.stderr, flush=True)
    print(f"{args.samples} calibration windows of {BLOCK} tokens, load average {os.getloadavg()[0]:.1f} at the end")
    print(
        markdown_table(
            [
                "method",
                "sparsity",
                "seed",
                "ours ppl",
                "llm-compressor ppl",
                "ratio",
                "ours s",
                "llm-compressor s",
                "same zeros",
            ],
            rows,
        )
    )


def speed(args) -> None:
    """SparseGPT on a ~100 M-parameter model: wall time of ours and llm-compressor's, interleaved."""
    folder = CACHE / "speed_llama_100m"
    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        big = causal_lm(
            "llama",
            hidden_size=768,
            num_layers=12,
            num_heads=12,
            num_kv_heads=4,
            intermediate_size=3072,
            max_positions=512,
        )
        big.save_pretrained(folder)
        ByteTokenizer().as_pretrained().save_pretrained(folder)
    parameters = sum(p.numel() for p in load(folder).parameters())
    samples = torch.randint(0, 256, (args.samples, args.tokens), generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {"ours": [], "llm-compressor": []}
    for repeat in range(args.repeats):
        model = load(folder)
        times["ours"].append(ours(model, "sparsegpt", PATTERNS["50%"], samples))
        del model
        times["llm-compressor"].append(llm_compressor(folder, "sparsegpt", PATTERNS["50%"], samples)[1])
        print(
            repeat, {k: v[-1] for k, v in times.items()}, f"load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True
        )
    rows = [[name, f"{median(v):.1f}", " / ".join(f"{t:.1f}" for t in v)] for name, v in times.items()]
    rows.append(["ours / llm-compressor", f"{median(times['ours']) / median(times['llm-compressor']):.3f}", ""])
    print(
        f"Llama-style {parameters / 1e6:.1f} M parameters, {args.samples} windows x {args.tokens} tokens, 50 % unstructured"
    )
    print(markdown_table(["SparseGPT", "median s", "runs"], rows))


def structured(args) -> None:
    """Heads / FFN channels (llama) and experts (mixtral) at 25 and 50 %, thinned; then a short
    fine-tune of the thinned model, or the same steps distilled from the dense model."""
    splits = text_splits()
    cases = [
        ("llama", "head", "wanda"),
        ("llama", "ffn", "wanda"),
        ("mixtral", "expert", "router"),
        ("mixtral", "ffn", "wanda"),
    ]
    rows = []
    for name, structure, method in cases:
        folder = dense_folder(name, args.steps)
        dense_model = load(folder)
        dense = evaluate(dense_model, splits, args.val_batches)
        dense_parameters = sum(p.numel() for p in dense_model.parameters())
        rows.append([name, "dense", "-", dense_parameters, f"{dense:.3f}", "", ""])
        for sparsity in (0.25, 0.5):
            values = {}
            for recovery in ("none", "fine-tune", "kd"):
                model = load(folder)
                samples = splits.train.random_windows(args.samples, 0)
                ours(model, method, dict(structure=structure, final_sparsity=sparsity), samples)
                if recovery != "none":
                    train(
                        model, splits, args.recovery_steps, lr=1e-3, teacher=dense_model if recovery == "kd" else None
                    )
                values[recovery] = evaluate(model, splits, args.val_batches)
            parameters = sum(p.numel() for p in model.parameters())
            rows.append(
                [
                    name,
                    structure,
                    f"{sparsity:.0%}",
                    parameters,
                    f"{values['none']:.3f}",
                    f"{values['fine-tune']:.3f}",
                    f"{values['kd']:.3f}",
                ]
            )
            print(rows[-1], file=sys.stderr, flush=True)
    print(
        f"wanda / router scores from {args.samples} windows; recovery: {args.recovery_steps} steps of 32 blocks, AdamW lr 1e-3 cosine"
    )
    print(
        markdown_table(
            ["model", "structure", "removed", "parameters", "ppl pruned", "+ fine-tune", "+ KD from dense"], rows
        )
    )


def _tp_prune_ffn(model, ratio: float):
    """Torch-Pruning's MetaPruner on the MLP channels only (attention, down_proj outputs and the head
    ignored, so every group is rooted at gate/up); returns the removed channels per layer."""
    import torch_pruning as tp

    ignored = [model.lm_head]
    for layer in model.model.layers:
        attention = layer.self_attn
        ignored += [attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj, layer.mlp.down_proj]
    example = torch.randint(0, 256, (1, 16))
    pruner = tp.pruner.MetaPruner(
        model,
        example_inputs=example,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio,
        ignored_layers=ignored,
        global_pruning=False,
        output_transform=lambda out: out.logits.sum(),
    )
    names = {module: name for name, module in model.named_modules()}
    removed = {}
    for group in pruner.step(interactive=True):
        for dep, idxs in group:
            name = names.get(dep.target.module, "")
            if name.endswith("mlp.gate_proj") and pruner.DG.is_out_channel_pruning_fn(dep.handler):
                removed[int(name.split(".")[2])] = sorted(int(getattr(i, "idx", i)) for i in idxs)
        group.prune()
    model.config.intermediate_size = model.model.layers[0].mlp.gate_proj.out_features
    return removed


def torch_pruning(args) -> None:
    """FFN channels at equal widths: Torch-Pruning (magnitude, p=2) vs ours (magnitude and Wanda);
    TP's pruned model checked against the original with the same channels zeroed."""
    splits = text_splits()
    folder = dense_folder("llama", args.steps)
    rows = []
    for ratio in (0.25, 0.5):
        theirs = load(folder)
        start = time.perf_counter()
        removed = _tp_prune_ffn(theirs, ratio)
        their_time = time.perf_counter() - start
        masked = load(folder)
        with torch.no_grad():
            for index, channels in removed.items():
                mlp = masked.model.layers[index].mlp
                mlp.gate_proj.weight[channels] = 0.0
                mlp.up_proj.weight[channels] = 0.0
                mlp.down_proj.weight[:, channels] = 0.0
        tokens = splits.val[0][0].unsqueeze(0)
        with torch.no_grad():
            difference = float((theirs(tokens).logits - masked(tokens).logits).abs().max())
        row = [
            "Torch-Pruning magnitude",
            f"{ratio:.0%}",
            theirs.config.intermediate_size,
            f"{evaluate(theirs, splits, args.val_batches):.3f}",
            f"{their_time:.2f}",
            f"{difference:.1e}",
        ]
        rows.append(row)
        for method in ("magnitude", "wanda"):
            model = load(folder)
            seconds = ours(
                model, method, dict(structure="ffn", final_sparsity=ratio), splits.train.random_windows(args.samples, 0)
            )
            rows.append(
                [
                    f"secateurs {method}",
                    f"{ratio:.0%}",
                    model.config.intermediate_size,
                    f"{evaluate(model, splits, args.val_batches):.3f}",
                    f"{seconds:.2f}",
                    "0 (checked by the tests)",
                ]
            )
        print(rows[-3:], file=sys.stderr, flush=True)
    print(
        "FFN channels of every layer of the llama preset; 'pruned = masked' is the largest logit difference between the pruned model and the original with the removed channels zeroed"
    )
    print(markdown_table(["pruner", "removed", "intermediate size", "perplexity", "seconds", "pruned = masked"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="+", choices=("train", "table", "peers", "speed", "structured", "torch_pruning"))
    parser.add_argument("--steps", type=int, default=600, help="training steps of the dense models")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=64, help="calibration windows")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per window (speed)")
    parser.add_argument("--val-batches", type=int, default=30, help="validation batches of 16 blocks")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--recovery-steps", type=int, default=100, help="fine-tune / KD steps after structured pruning")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print_header("Language-model pruning (bench/llm.py)", args.threads)
    for part in args.parts:
        if part == "train":
            for name in DENSE:
                dense_folder(name, args.steps)
        else:
            globals()[part](args)
        print(flush=True)


if __name__ == "__main__":
    main()
