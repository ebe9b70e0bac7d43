"""Attention of q new tokens over c cached tokens plus themselves (causal at the lower right):
what a chunked or prefix-cached prefill computes, by the kernels an engine could run it on.

- ``masked``: torch SDPA with a lower-right causal bias (``causal_lower_right``). torch sends
  that bias to its memory-efficient kernel, never to flash; the committed profiles time this.
- ``flash_merge``: two flash passes, the context non-causal and the chunk causal, merged by
  their log-sum-exp (how paged engines ran chunked context on flash kernels).
- ``flash_causal``: torch's flash kernel called causal on q < kv in one pass; valid only where
  its causal mask is aligned at the lower right (``alignment`` checks which it is).
- ``cudnn_merge``: as ``flash_merge`` on torch's cuDNN attention (on Hopper the kernel torch
  picks for a plain causal prefill, about twice as fast as flash there: FA3-class engines run
  chunks at that speed too).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

KERNELS = ("masked", "flash_merge", "flash_causal", "cudnn_merge")
_ACTIVE = ["masked"]
NOTES: dict = {"cudnn_gqa_copied": False}  # recorded next to the timings


def use(name: str) -> None:
    """Which kernel ``chunk`` (and so ``common.engine_sdpa``) runs from now on."""
    if name not in KERNELS:
        raise ValueError(f"unknown chunk kernel {name!r}; one of {KERNELS}")
    _ACTIVE[0] = name


def active() -> str:
    return _ACTIVE[0]


def chunk(q, k, v, scale: float | None = None, kernel: str | None = None):
    """Attention of ``q`` (B, H, L, d) over ``k``/``v`` (B, Hkv, S, d), S > L, lower-right causal."""
    kernel = kernel or _ACTIVE[0]
    if kernel == "masked":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_lower_right(q.shape[-2], k.shape[-2]),
                                              scale=scale, enable_gqa=q.shape[-3] != k.shape[-3])
    if kernel == "flash_causal":
        return _with_lse(q, k, v, True, scale)[0]
    c = k.shape[-2] - q.shape[-2]
    cudnn = kernel == "cudnn_merge"
    o1, l1 = _with_lse(q, k[..., :c, :], v[..., :c, :], False, scale, cudnn)
    o2, l2 = _with_lse(q, k[..., c:, :], v[..., c:, :], True, scale, cudnn)
    m = torch.maximum(l1, l2)
    w1, w2 = torch.exp(l1 - m).unsqueeze(-1), torch.exp(l2 - m).unsqueeze(-1)
    return ((o1.float() * w1 + o2.float() * w2) / (w1 + w2)).to(q.dtype)


@functools.cache
def _lower_right(q_len: int, kv_len: int):
    """Built once per shape: an eagerly timed call should not also time the bias's Python."""
    from torch.nn.attention.bias import causal_lower_right

    return causal_lower_right(q_len, kv_len)


def _with_lse(q, k, v, causal: bool, scale: float | None, cudnn: bool = False):
    """(output, log-sum-exp per query row) of one attention pass: torch's flash (or cuDNN)
    kernel on a GPU, the same two quantities from the scores on a CPU (smoke mode)."""
    if q.is_cuda and cudnn:
        try:
            out = torch.ops.aten._scaled_dot_product_cudnn_attention(
                q, k, v, None, True, 0.0, causal, False, scale=scale)
        except RuntimeError:  # a cuDNN without GQA: equal heads, at the cost of a copy
            NOTES["cudnn_gqa_copied"] = True
            rep = q.shape[-3] // k.shape[-3]
            out = torch.ops.aten._scaled_dot_product_cudnn_attention(
                q, k.repeat_interleave(rep, -3), v.repeat_interleave(rep, -3), None, True, 0.0,
                causal, False, scale=scale)
        return out[0], out[1].reshape(q.shape[:-1])  # cuDNN's log-sum-exp has a trailing 1
    if q.is_cuda:
        out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False,
                                                                 scale=scale)
        return out[0], out[1]
    rep = q.shape[-3] // k.shape[-3]
    k, v = k.repeat_interleave(rep, -3), v.repeat_interleave(rep, -3)
    s = (q @ k.transpose(-1, -2)) * (scale if scale is not None else q.shape[-1] ** -0.5)
    if causal:
        L, S = s.shape[-2:]
        s = s.masked_fill(~torch.ones(L, S, dtype=torch.bool, device=s.device).tril(S - L),
                          float("-inf"))
    return torch.softmax(s, -1) @ v, torch.logsumexp(s, -1)


def alignment(device, dtype) -> dict:
    """Max |difference| of each kernel against a float32 reference of lower-right causal
    attention (and of ``flash_causal`` against the upper-left one), on a small GQA case."""
    g = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(1, 8, 48, 64, device=device, generator=g).to(dtype)
    k, v = (torch.randn(1, 2, 176, 64, device=device, generator=g).to(dtype) for _ in range(2))
    ref = _reference(q, k, v, lower_right=True)
    out: dict[str, float | str] = {}
    for name in KERNELS:
        try:
            out[name] = float((chunk(q, k, v, kernel=name).float() - ref).abs().max())
        except RuntimeError as e:  # a kernel this torch/GPU cannot run: say so, keep going
            out[name] = f"error: {str(e).splitlines()[0][:120]}"
    if isinstance(out.get("flash_causal"), float):
        upper = _reference(q, k, v, lower_right=False)
        out["flash_causal_vs_upper_left"] = float((chunk(q, k, v, kernel="flash_causal").float()
                                                   - upper).abs().max())
    return {**out, **NOTES}


def _reference(q, k, v, lower_right: bool):
    q, k, v = q.float(), k.float(), v.float()
    L, S = q.shape[-2], k.shape[-2]
    mask = torch.ones(L, S, dtype=torch.bool, device=q.device).tril(S - L if lower_right else 0)
    rep = q.shape[-3] // k.shape[-3]
    return F.scaled_dot_product_attention(q, k.repeat_interleave(rep, -3),
                                          v.repeat_interleave(rep, -3), attn_mask=mask)
