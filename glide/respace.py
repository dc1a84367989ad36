"""Respacing: which subset of a trained process's timesteps to sample with (guided-diffusion's respace.py).

The process on those timesteps is `glide.gaussian_diffusion.SpacedDiffusion` (`GaussianDiffusion.respaced_to`).
"""
from typing import Iterable, List, Union

import numpy as np


def space_timesteps(num_timesteps: int, section_counts: Union[str, Iterable[int]]) -> set:
    """Which original timesteps to keep.

    `section_counts` is a list (or comma-separated string) of step counts for equal portions of the
    process, e.g. [10, 15, 20] over 300 steps strides the first 100 into 10 steps, and so on;
    "ddimN" uses the integer stride of the DDIM paper that gives exactly N steps; "fast27" is GLIDE's
    upsampler schedule ("10,10,3,2,2", with step T-3 in place of T-1 to reduce DDIM artefacts).
    """
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired_count = int(section_counts[len("ddim"):])
            for i in range(1, num_timesteps):
                if len(range(0, num_timesteps, i)) == desired_count:
                    return set(range(0, num_timesteps, i))
            raise ValueError(f"cannot create exactly {desired_count} steps with an integer stride "
                             f"over {num_timesteps}")
        if section_counts == "fast27":
            steps = space_timesteps(num_timesteps, "10,10,3,2,2")
            steps.remove(num_timesteps - 1)
            steps.add(num_timesteps - 3)
            return steps
        section_counts = [int(x) for x in section_counts.split(",")]
    section_counts = list(section_counts)
    if not section_counts or min(section_counts) < 1:
        raise ValueError(f"step counts must be positive, got {section_counts}")
    size_per, extra = divmod(num_timesteps, len(section_counts))
    start_idx = 0
    all_steps = []
    for i, section_count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if size < section_count:
            raise ValueError(f"cannot divide section of {size} steps into {section_count}")
        frac_stride = 1 if section_count <= 1 else (size - 1) / (section_count - 1)
        cur_idx = 0.0
        for _ in range(section_count):
            all_steps.append(start_idx + round(cur_idx))
            cur_idx += frac_stride
        start_idx += size
    return set(all_steps)


# How a solver can spread its steps over the noise levels, besides the reference's even spacing in t.
NOISE_SPACINGS = ("time", "logsnr", "karras")
KARRAS_RHO = 7.0        # Karras et al. 2022's rho: steps dense at low noise
SPACED_SIGMA_MAX = 80.0  # ... and their sigma_max: above it an image is noise to any model


def noise_spaced_timesteps(alphas_cumprod, steps: int, spacing: str) -> List[int]:
    """`steps` original timesteps, high to low, from the last (t = T - 1) to the first (t = 0).

    "time": the reference's even spacing in t (space_timesteps, as DDIM and DPM-Solver++(2M) use);
    "logsnr": even in log-SNR lambda = log(alpha / sigma) (DPM-Solver's spacing for small images);
    "karras": sigma_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho with
    rho = 7 (Karras et al. 2022), in EDM's sigma = sqrt((1 - abar) / abar).
    The last two space the levels from sigma = 80 (Karras et al.'s sigma_max) at most: GLIDE's cosine
    schedule ends at sigma ~ 2e4, and spacing from there spends half the steps above sigma = 100, on
    pure noise. The first step still starts at t = T - 1, where x_T is drawn (Lin et al. 2023: a sampler
    must start from the last timestep). A level maps to the trained timestep nearest in log-SNR; two
    levels that meet at one timestep count once, so few-step schedules may run a step less than asked.
    """
    alphas_cumprod = np.asarray(alphas_cumprod, dtype=np.float64)
    num_timesteps = len(alphas_cumprod)
    if spacing not in NOISE_SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; one of {', '.join(NOISE_SPACINGS)}")
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be between 1 and {num_timesteps}, got {steps}")
    if spacing == "time":
        return sorted(space_timesteps(num_timesteps, [steps]), reverse=True)
    if steps == 1:
        return [num_timesteps - 1]
    log_snr = 0.5 * np.log(alphas_cumprod / (1 - alphas_cumprod))   # decreasing in t
    top = max(log_snr[-1], -np.log(SPACED_SIGMA_MAX))
    if spacing == "logsnr":
        wanted = np.linspace(top, log_snr[0], steps)
    else:
        ramp = np.linspace(0, 1, steps)
        root_max, root_min = np.exp(-top / KARRAS_RHO), np.exp(-log_snr[0] / KARRAS_RHO)
        wanted = -KARRAS_RHO * np.log(root_max + ramp * (root_min - root_max))
    nearest = np.abs(log_snr[None, :] - wanted[1:, None]).argmin(axis=1)
    return sorted({num_timesteps - 1, *(int(t) for t in nearest)}, reverse=True)
