"""Frequency filters on image batches (2-D FFT, centred spectrum, circular masks).

``low_pass(x, r)`` keeps the frequencies within distance ``r`` of the centre of the centred
spectrum (distance in frequency-index units, the DC term at the centre); ``high_pass(x, r)``
is ``x - low_pass(x, r)``, so the two add up to the image exactly. Both act on the last two
dimensions of a real tensor of any leading shape.
"""
import torch


def radial_mask(height: int, width: int, radius: float, device=None) -> torch.Tensor:
    """Boolean ``(height, width)`` mask of the centred spectrum: distance to centre <= r."""
    fy = torch.arange(height, device=device, dtype=torch.float32) - height // 2
    fx = torch.arange(width, device=device, dtype=torch.float32) - width // 2
    dist = torch.sqrt(fy[:, None]**2 + fx[None, :]**2)
    return dist <= radius


def centred_spectrum(x: torch.Tensor) -> torch.Tensor:
    """``fftshift(fft2(x))`` over the last two dimensions."""
    return torch.fft.fftshift(torch.fft.fft2(x.float()), dim=(-2, -1))


def low_pass(x: torch.Tensor, radius: float) -> torch.Tensor:
    """Keep the frequencies within ``radius`` of the centre of the centred spectrum."""
    mask = radial_mask(x.shape[-2], x.shape[-1], radius, device=x.device)
    spec = centred_spectrum(x) * mask
    out = torch.fft.ifft2(torch.fft.ifftshift(spec, dim=(-2, -1))).real
    return out.to(x.dtype)


def high_pass(x: torch.Tensor, radius: float) -> torch.Tensor:
    """``x`` minus its low-pass: only frequencies farther than ``radius`` from the centre."""
    return x - low_pass(x, radius)
