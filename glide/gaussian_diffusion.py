"""Gaussian diffusion: schedules, the forward process, the reverse step rules and the training loss.

All per-timestep arrays are precomputed once in float64 (numpy) and gathered per batch, as in
guided-diffusion. A process may be *respaced* (a subset of the original timesteps: `SpacedDiffusion`;
which subset: respace.py): it then keeps `timestep_map`, and the model and any `cond_fn` receive original-scale timesteps.

Shapes: x is [N, C, H, W]; t is [N] int64 indices into this (possibly respaced) process; the model
returns [N, 2C, H, W]: the mean prediction (epsilon, or v for v-prediction models) and, in the last C
channels, the learned-range variance values in [-1, 1] (Nichol & Dhariwal, 2021).
"""
import collections
import math
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch

MEAN_TYPES = ("epsilon", "v")


def get_named_beta_schedule(schedule_name: str, num_diffusion_timesteps: int) -> np.ndarray:
    """Betas of a named schedule: 'linear' (Ho et al., scaled to any length) or 'squaredcos_cap_v2' (cosine)."""
    if schedule_name == "linear":
        scale = 1000 / num_diffusion_timesteps
        return np.linspace(scale * 0.0001, scale * 0.02, num_diffusion_timesteps, dtype=np.float64)
    if schedule_name == "squaredcos_cap_v2":
        return betas_for_alpha_bar(
            num_diffusion_timesteps, lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        )
    raise ValueError(f"unknown beta schedule {schedule_name!r}; choose 'linear' or 'squaredcos_cap_v2'")


def betas_for_alpha_bar(num_diffusion_timesteps: int, alpha_bar: Callable[[float], float], max_beta=0.999):
    """Discretise a continuous cumulative-alpha function alpha_bar(t), t in [0, 1], into betas."""
    betas = []
    for i in range(num_diffusion_timesteps):
        t1, t2 = i / num_diffusion_timesteps, (i + 1) / num_diffusion_timesteps
        betas.append(min(1 - alpha_bar(t2) / alpha_bar(t1), max_beta))
    return np.array(betas)


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    """Log-likelihood of images x in [-1, 1], quantised to 256 levels, under a Gaussian (nats)."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = _approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


class GaussianDiffusion:
    """Utilities for training and sampling diffusion models.

    :param betas: 1-D float64 betas of this process.
    :param model_mean_type: 'epsilon' (GLIDE) or 'v' (v-prediction, Salimans & Ho 2022).
    :param timestep_map: for a respaced process, the original timestep of each of its steps.
    :param base_betas: the betas of the original process (kept so it can be respaced again).
    """

    def __init__(self, *, betas, model_mean_type: str = "epsilon",
                 timestep_map: Optional[Sequence[int]] = None, base_betas=None):
        if model_mean_type not in MEAN_TYPES:
            raise ValueError(f"model_mean_type must be one of {MEAN_TYPES}, got {model_mean_type!r}")
        betas = np.array(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0).all() and (betas <= 1).all()):
            raise ValueError("betas must be a 1-D array in (0, 1]")
        self.betas = betas
        self.model_mean_type = model_mean_type
        self.num_timesteps = int(betas.shape[0])
        self.timestep_map = list(range(self.num_timesteps)) if timestep_map is None else list(timestep_map)
        self.base_betas = betas if base_betas is None else np.array(base_betas, dtype=np.float64)
        self.original_num_steps = len(self.base_betas)
        self._timestep_map_cache = {}
        self._coef_cache = {}   # (array name, device) -> float32 tensor, see _coef

        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas, axis=0)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.alphas_cumprod_next = np.append(self.alphas_cumprod[1:], 0.0)
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.one_minus_alphas_cumprod = 1.0 - self.alphas_cumprod
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        # Posterior q(x_{t-1} | x_t, x_0). Its variance is 0 at t = 0, so the log is clipped to step 1's.
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # (A one-step process has no step 1; its only step adds no noise, so beta is a finite stand-in.)
        first = self.posterior_variance[1] if self.num_timesteps > 1 else betas[0]
        self.posterior_log_variance_clipped = np.log(np.append(first, self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)
        self.log_betas = np.log(betas)

    def _coef(self, name: str, t: torch.Tensor, shape) -> torch.Tensor:
        """self.<name>[t] (a float64 array) as float32, broadcast to `shape` ([N, 1, 1, 1] -> shape).

        Each array is copied to a device once and kept: a GPU sampling loop then does no host-to-device
        copy (each of which would block until the GPU is idle) per step.
        """
        key = (name, t.device)
        table = self._coef_cache.get(key)
        if table is None:
            table = torch.from_numpy(getattr(self, name)).to(device=t.device).float()
            self._coef_cache[key] = table
        return table[t].view(-1, *([1] * (len(shape) - 1))).expand(shape)

    # ------------------------------------------------------------------ respacing
    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """Original-scale timesteps for indices t of this process (what models and cond_fns receive)."""
        key = (t.device, t.dtype)
        if key not in self._timestep_map_cache:
            self._timestep_map_cache[key] = torch.tensor(self.timestep_map, device=t.device, dtype=t.dtype)
        return self._timestep_map_cache[key][t]

    def respaced_to(self, timesteps) -> "GaussianDiffusion":
        """The same process on exactly these original timesteps (any set of them: respace.space_timesteps,
        respace.noise_spaced_timesteps)."""
        return SpacedDiffusion(timesteps, betas=self.base_betas, model_mean_type=self.model_mean_type)

    # ------------------------------------------------------------------ forward process
    def q_mean_variance(self, x_start, t):
        """Mean, variance and log-variance of q(x_t | x_0)."""
        mean = self._coef("sqrt_alphas_cumprod", t, x_start.shape) * x_start
        variance = self._coef("one_minus_alphas_cumprod", t, x_start.shape)
        log_variance = self._coef("log_one_minus_alphas_cumprod", t, x_start.shape)
        return mean, variance, log_variance

    def q_sample(self, x_start, t, noise=None):
        """Sample x_t ~ q(x_t | x_0)."""
        if noise is None:
            noise = torch.randn_like(x_start)
        return (self._coef("sqrt_alphas_cumprod", t, x_start.shape) * x_start
                + self._coef("sqrt_one_minus_alphas_cumprod", t, x_start.shape) * noise)

    def q_posterior_mean_variance(self, x_start, x_t, t):
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0)."""
        mean = (self._coef("posterior_mean_coef1", t, x_t.shape) * x_start
                + self._coef("posterior_mean_coef2", t, x_t.shape) * x_t)
        variance = self._coef("posterior_variance", t, x_t.shape)
        log_variance = self._coef("posterior_log_variance_clipped", t, x_t.shape)
        return mean, variance, log_variance

    # ------------------------------------------------------------------ parameterisations
    def _predict_xstart_from_eps(self, x_t, t, eps):
        return (self._coef("sqrt_recip_alphas_cumprod", t, x_t.shape) * x_t
                - self._coef("sqrt_recipm1_alphas_cumprod", t, x_t.shape) * eps)

    def _predict_eps_from_xstart(self, x_t, t, pred_xstart):
        return ((self._coef("sqrt_recip_alphas_cumprod", t, x_t.shape) * x_t - pred_xstart)
                / self._coef("sqrt_recipm1_alphas_cumprod", t, x_t.shape))

    def _predict_xstart_from_v(self, x_t, t, v):
        return (self._coef("sqrt_alphas_cumprod", t, x_t.shape) * x_t
                - self._coef("sqrt_one_minus_alphas_cumprod", t, x_t.shape) * v)

    def v_target(self, x_start, t, noise):
        """v = sqrt(abar) * eps - sqrt(1 - abar) * x_0, the v-prediction target."""
        return (self._coef("sqrt_alphas_cumprod", t, x_start.shape) * noise
                - self._coef("sqrt_one_minus_alphas_cumprod", t, x_start.shape) * x_start)

    def pred_xstart_from_output(self, x_t, t, mean_output):
        """x_0 implied by the model's mean channels, whatever its parameterisation."""
        if self.model_mean_type == "v":
            return self._predict_xstart_from_v(x_t, t, mean_output)
        return self._predict_xstart_from_eps(x_t, t, mean_output)

    # ------------------------------------------------------------------ reverse process
    def model_output_to_mean_variance(self, x, t, model_output, clip_denoised=True, denoised_fn=None):
        """p(x_{t-1} | x_t) from a raw model output [N, 2C, ...]: dict mean, variance, log_variance, pred_xstart.

        The variance interpolates, in log space, between the posterior variance (-1) and beta_t (+1).
        `denoised_fn` is applied to the x_0 prediction before clipping to [-1, 1].
        """
        C = x.shape[1]
        if model_output.shape != (x.shape[0], 2 * C, *x.shape[2:]):
            raise ValueError(f"model output {tuple(model_output.shape)} should be [N, {2 * C}, H, W] "
                             "(mean prediction and learned-range variance)")
        mean_output, var_values = model_output.split(C, dim=1)
        min_log = self._coef("posterior_log_variance_clipped", t, x.shape)
        max_log = self._coef("log_betas", t, x.shape)
        frac = (var_values + 1) / 2
        model_log_variance = frac * max_log + (1 - frac) * min_log

        pred_xstart = self.pred_xstart_from_output(x, t, mean_output)
        if denoised_fn is not None:
            pred_xstart = denoised_fn(pred_xstart)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        model_mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {"mean": model_mean, "variance": torch.exp(model_log_variance),
                "log_variance": model_log_variance, "pred_xstart": pred_xstart}

    def p_mean_variance(self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None):
        """Apply the model (with original-scale timesteps) and return p(x_{t-1} | x_t) and the x_0 prediction."""
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape [{x.shape[0]}], got {tuple(t.shape)}")
        model_output = model(x, self.model_timesteps(t), **(model_kwargs or {}))
        return self.model_output_to_mean_variance(x, t, model_output, clip_denoised, denoised_fn)

    def condition_mean(self, cond_fn, p_mean_var, x, t, model_kwargs=None):
        """Shift the mean by variance * grad log p(y | x_t) (Sohl-Dickstein et al., 2015): DDPM guidance."""
        gradient = cond_fn(x, self.model_timesteps(t), **(model_kwargs or {}))
        return p_mean_var["mean"].float() + p_mean_var["variance"] * gradient.float()

    def condition_score(self, cond_fn, p_mean_var, x, t, model_kwargs=None):
        """Shift epsilon by -sqrt(1 - abar) * grad log p(y | x_t) (Song et al., 2020): DDIM/ODE guidance."""
        alpha_bar = self._coef("alphas_cumprod", t, x.shape)
        eps = self._predict_eps_from_xstart(x, t, p_mean_var["pred_xstart"])
        eps = eps - (1 - alpha_bar).sqrt() * cond_fn(x, self.model_timesteps(t), **(model_kwargs or {}))
        out = dict(p_mean_var)
        out["pred_xstart"] = self._predict_xstart_from_eps(x, t, eps)
        out["mean"], _, _ = self.q_posterior_mean_variance(out["pred_xstart"], x, t)
        return out

    def p_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None, model_kwargs=None,
                 noise=None):
        """One ancestral (DDPM) step x_t -> x_{t-1}: dict 'sample', 'pred_xstart'."""
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        return self.p_sample_from(out, x, t, cond_fn=cond_fn, model_kwargs=model_kwargs, noise=noise)

    def p_sample_from(self, out, x, t, cond_fn=None, model_kwargs=None, noise=None):
        """The DDPM step given p_mean_variance's output (lets a caller combine several model outputs)."""
        if noise is None:
            noise = torch.randn_like(x)
        nonzero_mask = (t != 0).float().view(-1, *([1] * (x.ndim - 1)))  # no noise at the last step
        if cond_fn is not None:
            out["mean"] = self.condition_mean(cond_fn, out, x, t, model_kwargs)
        sample = out["mean"] + nonzero_mask * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None, model_kwargs=None,
                    eta=0.0, noise=None):
        """One DDIM step (Song et al., 2020, eq. 12); eta=0 is deterministic, eta=1 matches DDPM's variance."""
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        return self.ddim_sample_from(out, x, t, cond_fn=cond_fn, model_kwargs=model_kwargs, eta=eta, noise=noise)

    def ddim_sample_from(self, out, x, t, cond_fn=None, model_kwargs=None, eta=0.0, noise=None):
        """The DDIM step given p_mean_variance's output."""
        if cond_fn is not None:
            out = self.condition_score(cond_fn, out, x, t, model_kwargs)
        eps = self._predict_eps_from_xstart(x, t, out["pred_xstart"])
        alpha_bar = self._coef("alphas_cumprod", t, x.shape)
        alpha_bar_prev = self._coef("alphas_cumprod_prev", t, x.shape)
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
        if noise is None:
            noise = torch.randn_like(x)
        # The clamp only matters at eta ~ 1 on coarse schedules, where float32 rounding makes the
        # (mathematically non-negative) direction term negative and the reference returns NaN.
        direction = torch.sqrt((1 - alpha_bar_prev - sigma ** 2).clamp(min=0))
        mean_pred = out["pred_xstart"] * torch.sqrt(alpha_bar_prev) + direction * eps
        nonzero_mask = (t != 0).float().view(-1, *([1] * (x.ndim - 1)))
        return {"sample": mean_pred + nonzero_mask * sigma * noise, "pred_xstart": out["pred_xstart"]}

    def _loop(self, step, model, shape, noise, device, progress, **step_kwargs):
        if device is None:
            device = next(model.parameters()).device
        img = noise if noise is not None else torch.randn(*shape, device=device)
        indices = list(range(self.num_timesteps))[::-1]
        if progress:
            from tqdm.auto import tqdm

            indices = tqdm(indices)
        for i in indices:
            t = torch.full((shape[0],), i, device=device, dtype=torch.long)
            with torch.no_grad():
                out = step(model, img, t, **step_kwargs)
            yield out
            img = out["sample"]

    def p_sample_loop_progressive(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None,
                                  cond_fn=None, model_kwargs=None, device=None, progress=False):
        """Yield each DDPM step's output, from x_T to x_0."""
        yield from self._loop(self.p_sample, model, shape, noise, device, progress, clip_denoised=clip_denoised,
                              denoised_fn=denoised_fn, cond_fn=cond_fn, model_kwargs=model_kwargs)

    def p_sample_loop(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None, cond_fn=None,
                      model_kwargs=None, device=None, progress=False):
        """Generate samples [shape] by ancestral sampling over every step of this process."""
        steps = self.p_sample_loop_progressive(model, shape, noise, clip_denoised, denoised_fn, cond_fn,
                                               model_kwargs, device, progress)
        return collections.deque(steps, maxlen=1)[0]["sample"]  # the last step's, keeping no others

    def ddim_sample_loop_progressive(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None,
                                     cond_fn=None, model_kwargs=None, device=None, progress=False, eta=0.0):
        """Yield each DDIM step's output, from x_T to x_0."""
        yield from self._loop(self.ddim_sample, model, shape, noise, device, progress, clip_denoised=clip_denoised,
                              denoised_fn=denoised_fn, cond_fn=cond_fn, model_kwargs=model_kwargs, eta=eta)

    def ddim_sample_loop(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None, cond_fn=None,
                         model_kwargs=None, device=None, progress=False, eta=0.0):
        """Generate samples [shape] with DDIM over every step of this process."""
        steps = self.ddim_sample_loop_progressive(model, shape, noise, clip_denoised, denoised_fn, cond_fn,
                                                  model_kwargs, device, progress, eta)
        return collections.deque(steps, maxlen=1)[0]["sample"]

    # ------------------------------------------------------------------ training
    def training_losses(self, model, x_start, t, model_kwargs=None, noise=None, vb_weight: float = 1.0):
        """The hybrid objective of improved DDPM: MSE on the mean prediction + vb_weight * L_vlb term.

        The VLB term trains only the variance channels (the mean is detached inside it), and is
        rescaled by num_timesteps / 1000 as in Nichol & Dhariwal (lambda = 0.001 per 1000 steps).
        Returns per-example tensors: 'loss', 'mse', 'vb'.
        """
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise=noise)
        model_output = model(x_t, self.model_timesteps(t), **(model_kwargs or {}))
        C = x_start.shape[1]
        mean_output, var_values = model_output.split(C, dim=1)
        target = self.v_target(x_start, t, noise) if self.model_mean_type == "v" else noise
        mse = ((target - mean_output) ** 2).mean(dim=(1, 2, 3))

        frozen = torch.cat([mean_output.detach(), var_values], dim=1)
        vb = self._vb_terms_bpd(frozen, x_start, x_t, t) * (self.num_timesteps / 1000.0)
        return {"loss": mse + vb_weight * vb, "mse": mse, "vb": vb}

    def _vb_terms_bpd(self, model_output, x_start, x_t, t):
        """Per-example VLB term in bits per dimension: KL(q || p) for t > 0, decoder NLL at t = 0."""
        true_mean, _, true_log_variance = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.model_output_to_mean_variance(x_t, t, model_output, clip_denoised=False)
        kl = normal_kl(true_mean, true_log_variance, out["mean"], out["log_variance"])
        kl = kl.mean(dim=(1, 2, 3)) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x_start, out["mean"], 0.5 * out["log_variance"])
        nll = nll.mean(dim=(1, 2, 3)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)


class SpacedDiffusion(GaussianDiffusion):
    """A diffusion process that keeps only `use_timesteps` of the process defined by `betas`.

    The new betas keep alphas_cumprod equal at the kept steps; models and cond_fns are called with
    the original timesteps (`timestep_map`).
    """

    def __init__(self, use_timesteps: Iterable[int], betas, **kwargs):
        self.use_timesteps = set(use_timesteps)
        base_betas = np.array(betas, dtype=np.float64)
        alphas_cumprod = np.cumprod(1.0 - base_betas)
        last_alpha_cumprod = 1.0
        new_betas, timestep_map = [], []
        for i, alpha_cumprod in enumerate(alphas_cumprod):
            if i in self.use_timesteps:
                new_betas.append(1 - alpha_cumprod / last_alpha_cumprod)
                last_alpha_cumprod = alpha_cumprod
                timestep_map.append(i)
        super().__init__(betas=np.array(new_betas), timestep_map=timestep_map, base_betas=base_betas, **kwargs)
