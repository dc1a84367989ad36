"""Built-in multistep ODE solvers that pick their own timesteps: UniPC and DPM-Solver++(3M).

Registered through the same hooks a third-party plugin uses (see samplers.hookspecs). Both work on the
data prediction x0 in log-SNR time lambda = log(alpha / sigma), like DPM-Solver++(2M) (builtin_rules),
so they serve epsilon and v models alike and gradient guidance enters through `run.guide_score`.
Both take their step into the last timestep at first order (and the one before it at most at second),
the official solvers' `lower_order_final`: GLIDE's schedules end at abar ~ 0.99996, where that step's
log-SNR jump dwarfs the previous ones and a high-order extrapolation overshoots. Their last model
evaluation returns its x0 prediction (the step to zero noise).
"""
import math

import torch

from glide.respace import NOISE_SPACINGS, noise_spaced_timesteps

from .base import Param
from .hookspecs import hookimpl

SPACING = Param("spacing", str, "time", help=(
    "where the steps go: time = even in t (as ddim and dpm++2m), logsnr = even in log-SNR, "
    "karras = Karras et al.'s rho = 7 spacing (dense at low noise)"), choices=NOISE_SPACINGS)


def _spaced(trained, steps, spacing):
    return noise_spaced_timesteps(trained.alphas_cumprod, steps, spacing)


def _levels(abar):
    """(alpha, sigma, lambda) of a cumulative alpha."""
    return math.sqrt(abar), math.sqrt(1 - abar), 0.5 * math.log(abar / (1 - abar))


def _order(order: int, i: int, count: int) -> int:
    """The order of step i of count - 1 steps: warm-up (as many earlier x0s as there are) and lower_order_final."""
    return max(1, min(order, i + 1, count - 1 - i))


class UniPC:
    """UniPC (Zhao et al. 2023, arXiv 2302.04867): a multistep predictor (UniP) and a corrector (UniC) that
    reuses the next model evaluation, so order p + 1 at the cost of p; B(h) = e^{-h} - 1 ("bh2"), data
    prediction, as diffusers' UniPCMultistepScheduler. Order 2 is the paper's choice for guided sampling.

    With x0 predictions D_k at lambda_k, h = lambda_t - lambda_s, r_k = (lambda_k - lambda_s) / h and
    D1_k = (D_k - D_s) / r_k, one step is
        x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D_s - alpha_t B(h) sum_k rho_k D1_k
    with rho solving R rho = b, R_ik = r_k^(i-1), b_i = phi_{i+1}(-h) i! / B(h) (the predictor uses the
    earlier points, the corrector those and the new x0 at r = 1).
    """

    name = "unipc"
    description = "UniPC (bh2): predictor-corrector multistep ODE solver, good images in 5-10 steps"
    params = [Param("order", int, 2, 1, 3, "solver order: 2 for guided sampling (the paper's), 3 unguided"),
              SPACING]

    def timesteps(self, trained, steps, order=2, spacing="time"):
        return _spaced(trained, steps, spacing)

    def sample(self, run, x, order=2, spacing="time"):
        abar = run.diffusion.alphas_cumprod
        timesteps = run.timesteps
        lambdas, x0s = [], []          # of the points passed, newest last
        x_prev, step_order = None, 1   # the point before x, and the order of the step that reached x
        for i, index in enumerate(timesteps):
            t = run.t_batch(index, x)
            x0 = run.guide_score(run.denoise(x, t), x, t)["pred_xstart"]
            alpha, sigma, lam = _levels(abar[index])
            if x_prev is not None and i < len(timesteps) - 1:   # UniC: correct x with its own evaluation
                x = self._step(x_prev, lambdas, x0s, (alpha, sigma, lam), step_order, corrector=x0)
            lambdas, x0s = (lambdas + [lam])[-order:], (x0s + [x0])[-order:]
            if i == len(timesteps) - 1:
                x = x0
            else:
                step_order = _order(order, i, len(timesteps))
                x_prev = x
                x = self._step(x, lambdas, x0s, _levels(abar[timesteps[i + 1]]), step_order)
            run.report(i, x0)
        return x

    @staticmethod
    def _step(x, lambdas, x0s, target, order, corrector=None):
        """UniP from the newest point (x, lambdas[-1], x0s[-1]) to `target` (alpha, sigma, lambda) with
        `order` - 1 earlier points; with `corrector` (the x0 at target), UniC of that order."""
        alpha_t, sigma_t, lambda_t = target
        lambda_s, d_s = lambdas[-1], x0s[-1]
        sigma_s = math.sqrt(1 / (1 + math.exp(2 * lambda_s)))
        h = lambda_t - lambda_s
        rks = [(lambdas[-1 - k] - lambda_s) / h for k in range(1, order)]
        d1s = [(x0s[-1 - k] - d_s) / r for k, r in zip(range(1, order), rks)]
        hh = -h
        b_h = math.expm1(hh)
        h_phi_k, factorial = math.expm1(hh) / hh - 1, 1
        nodes = rks + [1.0]
        rows, b = [], []
        for i in range(1, order + 1):
            rows.append([r ** (i - 1) for r in nodes])
            b.append(h_phi_k * factorial / b_h)
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        x_t = (sigma_t / sigma_s) * x - alpha_t * math.expm1(hh) * d_s
        if corrector is None:
            if not d1s:
                return x_t
            rhos = [0.5] if order == 2 else torch.linalg.solve(
                torch.tensor(rows[:-1], dtype=torch.float64)[:, :-1], torch.tensor(b[:-1], dtype=torch.float64)).tolist()
            return x_t - alpha_t * b_h * sum(rho * d1 for rho, d1 in zip(rhos, d1s))
        rhos = [0.5] if order == 1 else torch.linalg.solve(torch.tensor(rows, dtype=torch.float64),
                                                           torch.tensor(b, dtype=torch.float64)).tolist()
        correction = sum(rho * d1 for rho, d1 in zip(rhos[:-1], d1s)) + rhos[-1] * (corrector - d_s)
        return x_t - alpha_t * b_h * correction


class DPMSolverPP3M:
    """DPM-Solver++(3M) (Lu et al. 2022), as k-diffusion's sample_dpmpp_3m_sde at eta = 0: the first-order
    step x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D_s, plus alpha_t (phi_2 d1 - phi_3 d2) from the
    last three x0s' first and second divided differences in lambda (phi_2 = (e^{-h} - 1) / h + 1,
    phi_3 = phi_2 / h - 1/2); second order (phi_2 d only) while only two are known."""

    name = "dpm++3m"
    description = "DPM-Solver++(3M): deterministic 3rd-order multistep ODE solver"
    params = [SPACING]

    def timesteps(self, trained, steps, spacing="time"):
        return _spaced(trained, steps, spacing)

    def sample(self, run, x, spacing="time"):
        abar = run.diffusion.alphas_cumprod
        timesteps = run.timesteps
        x0s, hs = [], []   # the last x0s and step sizes, newest last
        for i, index in enumerate(timesteps):
            t = run.t_batch(index, x)
            x0 = run.guide_score(run.denoise(x, t), x, t)["pred_xstart"]
            x0s = (x0s + [x0])[-3:]
            if i == len(timesteps) - 1:
                x = x0
            else:
                _, sigma_s, lambda_s = _levels(abar[index])
                alpha_t, sigma_t, lambda_t = _levels(abar[timesteps[i + 1]])
                h = lambda_t - lambda_s
                order = _order(3, i, len(timesteps))
                x = (sigma_t / sigma_s) * x - alpha_t * math.expm1(-h) * x0
                phi_2 = math.expm1(-h) / h + 1
                if order == 3:
                    r0, r1 = hs[-1] / h, hs[-2] / h
                    d1_0, d1_1 = (x0s[-1] - x0s[-2]) / r0, (x0s[-2] - x0s[-3]) / r1
                    d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                    d2 = (d1_0 - d1_1) / (r0 + r1)
                    x = x + alpha_t * (phi_2 * d1 - (phi_2 / h - 0.5) * d2)
                elif order == 2:
                    x = x + alpha_t * phi_2 * (x0s[-1] - x0s[-2]) / (hs[-1] / h)
                hs = (hs + [h])[-2:]
            run.report(i, x0)
        return x


@hookimpl
def glide_step_rules():
    return [UniPC(), DPMSolverPP3M()]
