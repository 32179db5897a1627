"""A fused path for mmpretrain's Swin window attention.

mmpretrain 1.2's ``WindowMSA`` computes softmax attention by hand (``q @ k^T``, bias,
mask, softmax, ``@ v``): several kernels and an ``N x N`` attention matrix kept for the
backward, once per HAT pass. :class:`SDPAWindowMSA` computes the same function with
``torch.nn.functional.scaled_dot_product_attention`` (relative position bias and shift mask
as an additive ``attn_mask``), which PyTorch runs as one fused kernel where one fits: on CUDA,
the memory-efficient kernel (flash attention takes no mask). That needs the last dimension of
``q``, ``k``, ``v`` and the mask at stride 1; otherwise PyTorch silently takes its math path,
in fp32 under autocast. cuDNN's attention kernel is left out: PyTorch prefers it on H100s for
calls without gradient (the no-grad clean forward of HAT), where it took 3.4-3.6x the
memory-efficient kernel's time on Swin-T's 49-token windows (one H100, torch 2.11, bf16,
batch 128).

Parameters, buffers and state-dict keys are unchanged, so checkpoints are interchangeable.
"""
import torch
import torch.nn.functional as F
from mmpretrain.models.utils.attention import WindowMSA
from torch.nn.attention import SDPBackend, sdpa_kernel

# flash: the CPU's fused kernel (on CUDA it takes no mask); math: the fallback
WINDOW_ATTENTION_KERNELS = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION,
                            SDPBackend.MATH]


class SDPAWindowMSA(WindowMSA):
    """``WindowMSA`` with the attention done by ``scaled_dot_product_attention``."""

    def forward(self, x, mask=None):
        B_, N, C = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).reshape(B_, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # B_, heads, N, d
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        # heads, N, N; contiguous: CUDA's fused kernels need the mask's last dimension at
        # stride 1, and the permuted view has stride ``heads`` (the call would fall back to
        # the unfused math path, which computes in fp32 under autocast)
        bias = bias.view(N, N, heads).permute(2, 0, 1).contiguous()
        if mask is None:
            attn_mask = bias.unsqueeze(0)
        else:  # windows of one image are consecutive: fold them into the head dimension
            nW = mask.shape[0]
            q, k, v = (t.reshape(B_ // nW, nW * heads, N, -1) for t in (q, k, v))
            attn_mask = (bias.unsqueeze(0) + mask.unsqueeze(1)).reshape(1, nW * heads, N, N)
        with sdpa_kernel(WINDOW_ATTENTION_KERNELS):
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask.to(q.dtype),
                dropout_p=self.attn_drop.p if self.training else 0.0, scale=self.scale)
        out = out.reshape(B_, heads, N, -1).transpose(1, 2).reshape(B_, N, C)
        return self.proj_drop(self.proj(out))


def use_fused_window_attention(model: torch.nn.Module) -> int:
    """Switch every mmpretrain ``WindowMSA`` in ``model`` to :class:`SDPAWindowMSA`.

    Returns how many modules were switched.
    """
    count = 0
    for module in model.modules():
        if type(module) is WindowMSA:
            module.__class__ = SDPAWindowMSA
            count += 1
    return count
