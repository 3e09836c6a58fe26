"""Image embedding throughput: the product's path against a naive baseline, side by side.

    .venv/bin/python bench/embedding.py [--images 128] [--repeats 5]

Baseline: torchvision ResNet50, eager fp32, NCHW, batch 32, on ready (preprocessed) tensors.
Prints images/s (medians of interleaved repetitions), the levers one by one, the end-to-end path from
base64 cells, the decode-overlap ratio, the cost of missing images and the cosine similarity of the
product's features to fp32 ones. Random ResNet50 weights (same network, same cost as ImageNet's).
"""
from __future__ import annotations

import argparse
import copy

import common  # noqa: F401 - sets sys.path first
import numpy as np
import torch  # before tensorflow, always

from multimodal.classifier import images


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    cells = common.photo_cells(args.images)
    embedder = images.ImageEmbedder("random", batch_size=args.batch_size)
    print(f"{args.images} photos, batch {args.batch_size}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, CPU capability {torch.backends.cpu.get_cpu_capability()}, native bf16: "
          f"{images.native_bf16(embedder.device)}; product path: {embedder.describe()}")

    uint8 = np.stack([images.crop_224(images.decode_image(cell)) for cell in cells])
    ready_nchw = torch.from_numpy(np.stack([images.preprocess(images.decode_image(cell)) for cell in cells]))
    ready_cl = ready_nchw.contiguous(memory_format=torch.channels_last)
    baseline, _ = images.build_backbone("random")
    channels_last = copy.deepcopy(baseline).to(memory_format=torch.channels_last)
    cpu = torch.device("cpu")
    folded_fp32 = images.inference_network(copy.deepcopy(baseline), cpu, torch.float32, compiled=False)
    traced_fp32 = images.inference_network(copy.deepcopy(baseline), cpu, torch.float32)
    folded_bf16 = images.inference_network(copy.deepcopy(baseline), cpu, torch.bfloat16, compiled=False)
    traced_bf16 = images.inference_network(copy.deepcopy(baseline), cpu, torch.bfloat16)

    def run(model, tensor, autocast: bool = False, dtype=torch.float32):
        def go():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                for start in range(0, len(tensor), args.batch_size):
                    model(tensor[start:start + args.batch_size].to(dtype))
        return go

    def network_only():
        for start in range(0, len(uint8), args.batch_size):
            embedder._forward(uint8[start:start + args.batch_size])

    candidates = {
        "baseline: fp32, NCHW, ready tensors": run(baseline, ready_nchw),
        "fp32, channels_last": run(channels_last, ready_cl),
        "fp32, channels_last, batch norm folded": run(folded_fp32, ready_cl),
        "bf16 autocast, NCHW": run(baseline, ready_nchw, autocast=True),
        "bf16 autocast, channels_last": run(channels_last, ready_cl, autocast=True),
        "bf16 weights, channels_last, batch norm folded": run(folded_bf16, ready_cl, dtype=torch.bfloat16),
        "fp32, channels_last, folded, TorchScript frozen (oneDNN graph)": run(traced_fp32, ready_cl),
        "bf16, channels_last, folded, TorchScript frozen (oneDNN graph)": run(traced_bf16, ready_cl,
                                                                            dtype=torch.bfloat16),
        "product network on decoded uint8 (normalise + forward)": network_only,
        "product end to end: base64 -> decode -> resize/crop -> features": lambda: embedder.embed(cells, "bench"),
    }
    if embedder.precision == "fp32":  # no native bf16: the bf16 rows would only measure emulation
        for name in [n for n in candidates if "bf16" in n]:
            del candidates[name]
    missing = [""] * args.images
    candidates["product, image column empty (black-square embedding)"] = lambda: embedder.embed(missing, "bench")

    for function in candidates.values():  # warm-up: oneDNN primitive creation, caches
        function()
    rates = common.median_rates(candidates, args.images, args.repeats)
    base = rates["baseline: fp32, NCHW, ready tensors"]
    common.print_table(
        f"Image embedding, images/s (median of {args.repeats})", ["path", "images/s", "× baseline"],
        [[name, f"{rate:.1f}", f"{rate / base:.2f}"] for name, rate in rates.items()],
    )

    with torch.inference_mode():
        reference = baseline(ready_nchw).numpy()
    features, _, _ = embedder.embed(cells, "bench")
    cosine = _cosine(features, reference)
    # Random weights give nearly the same feature vector for every image; the cosine of the deviations from
    # the mean feature is the stricter check of what distinguishes images.
    centred = _cosine(features - reference.mean(0), reference - reference.mean(0))
    end_to_end = rates["product end to end: base64 -> decode -> resize/crop -> features"]
    print(f"\nend to end vs baseline: {end_to_end / base:.2f}x (goal >= 4)")
    print(f"decode overlap: end to end / product network on decoded images = "
          f"{end_to_end / rates['product network on decoded uint8 (normalise + forward)']:.2f} (goal >= 0.85)")
    print(f"missing images: {rates['product, image column empty (black-square embedding)'] / end_to_end:.0f}x "
          "faster than the same rows with images (goal >= 20)")
    print(f"cosine similarity of the product's features to fp32 baseline features: min {cosine.min():.5f}, "
          f"median {np.median(cosine):.5f} (goal >= 0.99); of the deviations from the mean feature: min "
          f"{centred.min():.4f}, median {np.median(centred):.4f}")


if __name__ == "__main__":
    main()
