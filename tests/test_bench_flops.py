"""scripts/bench_big_models.py's FLOP count (the figures of --flops)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_big_models.py"
spec = importlib.util.spec_from_file_location("bench_big_models", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_step_gflop_counts_matmuls_and_attention_apart():
    a, b = torch.randn(4, 8), torch.randn(8, 16)
    gflop, attention = bench.step_gflop(lambda: a @ b)
    assert gflop == pytest.approx(2 * 4 * 8 * 16 / 1e9) and attention == 0
    q = k = v = torch.randn(1, 2, 10, 4)
    gflop, attention = bench.step_gflop(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
    assert gflop == pytest.approx(2 * (2 * 2 * 10 * 10 * 4) / 1e9) and attention == 1.0  # scores, then values
    gflop, attention = bench.step_gflop(lambda: (torch.nn.functional.scaled_dot_product_attention(q, k, v), a @ b))
    assert attention == pytest.approx(3200 / (3200 + 1024))
