"""
Pretrain a small GPT for a fixed wall-clock budget, then print val_bpb and a summary block.
This is the one file the agent edits. Single device, single file: a port of Karpathy's
autoresearch train.py (itself cherry-picked from nanochat) that also runs on CPU and Apple MPS.

Usage: python prepare.py (once), then python train.py
"""

from __future__ import annotations

import gc
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from prepare import MAX_SEQ_LEN, TIME_BUDGET, Tokenizer, finish, make_dataloader

# ---------------------------------------------------------------------------
# Hyperparameters: edit these directly, no CLI flags.
# Keep them plain literals, one per line: the sweep proposer rewrites module-level UPPER_CASE
# literals. CPU_* values apply on CPU and Apple MPS (tuned for 5 minutes on 2 cores), CUDA_*
# values on NVIDIA GPUs (Karpathy's H100 setup); the rest apply everywhere. Sequence length
# and vocab come from prepare.py.
# ---------------------------------------------------------------------------

# Model shape: width = DEPTH * ASPECT_RATIO, rounded up to a multiple of HEAD_DIM.
CPU_DEPTH = 4
CUDA_DEPTH = 8
CPU_ASPECT_RATIO = 32
CUDA_ASPECT_RATIO = 64
CPU_HEAD_DIM = 64
CUDA_HEAD_DIM = 128
CPU_WINDOW_PATTERN = "L"  # attention window per layer, cycled: L = full context, S = half
CUDA_WINDOW_PATTERN = "SSSL"  # the last layer is always L
# Value embeddings on alternating layers, gated into v (nanochat). Off on CPU: on 2 cores
# their 1M extra parameters cost a third of the throughput and did not pay for it in 5 minutes.
CPU_VALUE_EMBEDS = False
CUDA_VALUE_EMBEDS = True
SOFTCAP = 15.0  # logits = SOFTCAP * tanh(logits / SOFTCAP)
ROPE_BASE = 10000.0

# Batch: tokens per optimizer step; rows per forward/backward (the rest is grad accumulation).
CPU_TOTAL_BATCH_SIZE = 8192  # 2**13
CUDA_TOTAL_BATCH_SIZE = 524288  # 2**19
CPU_DEVICE_BATCH_SIZE = 8
CUDA_DEVICE_BATCH_SIZE = 128

# Optimization (Karpathy's values). AdamW LRs are scaled by (width/768)^-0.5 below.
EMBEDDING_LR = 0.6  # token and value embeddings (AdamW)
UNEMBEDDING_LR = 0.004  # lm_head (AdamW)
MATRIX_LR = 0.04  # transformer matrices (Muon)
SCALAR_LR = 0.5  # per-layer residual mixing scalars (AdamW)
WEIGHT_DECAY = 0.2  # cautious weight decay on Muon matrices, decayed linearly to 0
ADAM_BETA1 = 0.8
ADAM_BETA2 = 0.95
MUON_MOMENTUM_START = 0.85  # Muon momentum ramps from this...
MUON_MOMENTUM = 0.95  # ...to this...
MUON_RAMP_RATIO = 0.3  # ...over this fraction of the budget (Karpathy: 300 of ~950 steps)
WARMUP_RATIO = 0.0  # fraction of the time budget for LR warmup
WARMDOWN_RATIO = 0.5  # fraction of the time budget for the linear LR warmdown
FINAL_LR_FRAC = 0.0  # LR at the end, as a fraction of the initial LR

# ---------------------------------------------------------------------------
# GPT model
# ---------------------------------------------------------------------------


@dataclass
class GPTConfig:
    sequence_len: int = 256
    vocab_size: int = 4096
    n_layer: int = 4
    n_head: int = 2
    n_embd: int = 128
    window_pattern: str = "L"
    value_embeds: bool = True
    softcap: float = 15.0
    rope_base: float = 10000.0
    use_fa3: bool = False  # Flash Attention 3 kernel (Hopper only); else PyTorch SDPA


def norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))  # no learnable weight


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


def has_value_embed(layer: int, n_layer: int) -> bool:
    return layer % 2 == (n_layer - 1) % 2  # alternating layers, the last one included


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.config = config
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.c_q = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.c_k = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.c_v = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.gate_channels = min(32, config.n_embd)
        use_ve = config.value_embeds and has_value_embed(layer, config.n_layer)
        self.ve_gate = nn.Linear(self.gate_channels, config.n_head, bias=False) if use_ve else None
        self.flash_attn = None
        if config.use_fa3:  # bound here, not imported inside forward, so torch.compile traces it
            from flash_attn_interface import flash_attn_func

            self.flash_attn = flash_attn_func

    def forward(self, x, ve, cos_sin, window: int):
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_head, self.head_dim)
        if ve is not None:  # value embedding, mixed in per head through a sigmoid gate
            gate = 2 * torch.sigmoid(self.ve_gate(x[..., : self.gate_channels]))
            ve = ve.view(B, T, self.n_head, self.head_dim)
            v = v + (gate.unsqueeze(-1) * ve).to(v.dtype)  # stay bf16 under autocast (FA3)
        q, k = apply_rotary(q, *cos_sin), apply_rotary(k, *cos_sin)
        q, k = norm(q).to(v.dtype), norm(k).to(v.dtype)  # QK-norm; keep the autocast dtype
        if self.flash_attn is not None:  # FA3 takes (B, T, H, D) and windows natively
            y = self.flash_attn(q, k, v, causal=True, window_size=(window, 0))
            y = y[0] if isinstance(y, tuple) else y  # some FA3 versions also return the LSE
        else:
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            if window >= T - 1:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:  # sliding window: key j is visible from query i when 0 <= i - j <= window
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril().triu(-window)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            y = y.transpose(1, 2)
        return self.c_proj(y.contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())  # ReLU^2


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.attn = CausalSelfAttention(config, layer)
        self.mlp = MLP(config)

    def forward(self, x, ve, cos_sin, window):
        x = x + self.attn(norm(x), ve, cos_sin, window)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.value_embeds = nn.ModuleDict({
            str(i): nn.Embedding(config.vocab_size, config.n_embd)
            for i in range(config.n_layer)
            if config.value_embeds and has_value_embed(i, config.n_layer)
        })
        # Per-layer residual scalars: x = resid * x + x0_mix * (normed input embedding).
        self.resid_lambdas = nn.Parameter(torch.ones(config.n_layer))
        self.x0_lambdas = nn.Parameter(torch.zeros(config.n_layer))
        self.windows = self._window_sizes()
        head_dim = config.n_embd // config.n_head
        inv_freq = config.rope_base ** -(torch.arange(0, head_dim, 2).float() / head_dim)
        freqs = torch.outer(torch.arange(config.sequence_len).float(), inv_freq)
        self.register_buffer("cos", freqs.cos()[None, :, None, :], persistent=False)
        self.register_buffer("sin", freqs.sin()[None, :, None, :], persistent=False)

    def _window_sizes(self) -> list[int]:
        long = self.config.sequence_len
        sizes = {"L": long, "S": long // 2}
        pattern = self.config.window_pattern.upper()
        windows = [sizes[pattern[i % len(pattern)]] for i in range(self.config.n_layer)]
        windows[-1] = long
        return windows

    @torch.no_grad()
    def init_weights(self) -> None:
        # nanochat's init: residual projections start at zero, so each block starts as identity.
        s = 3**0.5 * self.config.n_embd**-0.5  # uniform bound with std 1/sqrt(width)
        nn.init.normal_(self.wte.weight, std=1.0)
        nn.init.normal_(self.lm_head.weight, std=0.001)
        for block in self.blocks:
            for lin in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc):
                nn.init.uniform_(lin.weight, -s, s)
            nn.init.zeros_(block.attn.c_proj.weight)
            nn.init.zeros_(block.mlp.c_proj.weight)
            if block.attn.ve_gate is not None:
                nn.init.zeros_(block.attn.ve_gate.weight)
        for ve in self.value_embeds.values():
            nn.init.uniform_(ve.weight, -s, s)
        self.resid_lambdas.fill_(1.0)
        self.x0_lambdas.fill_(0.1)

    def num_flops_per_token(self) -> float:
        """Training FLOPs per token: 6 per matmul weight, plus attention (PaLM appendix B)."""
        embeds = self.wte.weight.numel() + sum(p.numel() for p in self.value_embeds.parameters())
        n = sum(p.numel() for p in self.parameters()) - embeds
        T = self.config.sequence_len
        attn = sum(12 * self.config.n_embd * min(w, T) for w in self.windows)
        return 6 * n + attn

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        T = idx.size(1)
        cos_sin = self.cos[:, :T], self.sin[:, :T]
        x = norm(self.wte(idx))
        x0 = x
        for i, block in enumerate(self.blocks):
            x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            ve = self.value_embeds[str(i)](idx) if str(i) in self.value_embeds else None
            x = block(x, ve, cos_sin, self.windows[i])
        logits = self.lm_head(norm(x)).float()
        logits = self.config.softcap * torch.tanh(logits / self.config.softcap)  # logit softcap
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def build_model(config: GPTConfig) -> GPT:
    """The entry point for anything that needs this file's model: build and initialize it."""
    model = GPT(config)
    model.init_weights()
    return model


# ---------------------------------------------------------------------------
# Optimizer: Muon for the 2-D transformer matrices, AdamW for everything else
# ---------------------------------------------------------------------------

# Polar Express coefficients (arxiv 2505.16932; 5 iterations, safety factor 2e-2, cushion 2),
# as used by nanochat and Karpathy's autoresearch.
polar_express_coeffs = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
]


def orthogonalize(G: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximate the orthogonal polar factor of each matrix in a stack (Polar Express).

    bf16 on GPUs as in Karpathy's version; fp32 elsewhere, where bf16 matmuls are slow."""
    X = G.bfloat16() if G.is_cuda else G.float()
    X = X / (X.norm(dim=(-2, -1), keepdim=True) * 1.02 + 1e-6)
    for a, b, c in polar_express_coeffs[:steps]:
        if X.size(-2) > X.size(-1):  # tall: iterate on the small Gram matrix X^T X
            A = X.mT @ X
            X = a * X + X @ (b * A + c * (A @ A))
        else:
            A = X @ X.mT
            X = a * X + (b * A + c * (A @ A)) @ X
    return X.to(G.dtype)


class MuonAdamW(torch.optim.Optimizer):
    """One optimizer over groups of kind "adamw" or "muon" (a Muon group shares one shape)."""

    def __init__(self, param_groups: list[dict]):
        super().__init__(param_groups, defaults={})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            (self._adamw if group["kind"] == "adamw" else self._muon)(group)

    def _adamw(self, group: dict) -> None:
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
            state["step"] += 1
            state["m"].lerp_(p.grad, 1 - beta1)
            state["v"].lerp_(p.grad.square(), 1 - beta2)
            denom = (state["v"] / (1 - beta2 ** state["step"])).sqrt_().add_(group["eps"])
            p.mul_(1 - lr * wd)
            p.addcdiv_(state["m"], denom, value=-lr / (1 - beta1 ** state["step"]))

    def _muon(self, group: dict) -> None:
        params = group["params"]
        grads = torch.stack([p.grad for p in params])
        stacked = torch.stack(params)
        rows, cols = params[0].shape
        state = self.state[params[0]]
        red_dim = -1 if rows >= cols else -2  # second moment per row if tall, else per column
        if not state:
            state["momentum"] = torch.zeros_like(grads)
            state["second"] = torch.zeros_like(grads.float().mean(dim=red_dim, keepdim=True))
        # Nesterov momentum, then orthogonalize the update.
        momentum = group["momentum"]
        state["momentum"].lerp_(grads, 1 - momentum)
        g = orthogonalize(grads.lerp_(state["momentum"], momentum), group["ns_steps"])
        # NorMuon (arxiv 2510.05491): equalize per-neuron update scale with a second moment,
        # then restore the overall norm.
        v_mean = g.float().square().mean(dim=red_dim, keepdim=True)
        red_size = g.size(red_dim)
        v_norm = (v_mean.sum(dim=(-2, -1), keepdim=True) * red_size).sqrt()
        state["second"].lerp_(v_mean, 1 - group["beta2"])
        scale = state["second"].clamp_min(1e-10).rsqrt()
        v_norm_new = (v_mean * red_size * scale.square()).sum(dim=(-2, -1), keepdim=True).sqrt()
        g = g * (scale * v_norm / v_norm_new.clamp_min(1e-10)).to(g.dtype)
        # Cautious weight decay: only where the update and the weight agree in sign.
        lr = group["lr"] * max(1.0, rows / cols) ** 0.5
        mask = (g * stacked) >= 0
        stacked.sub_(lr * g + lr * group["weight_decay"] * stacked * mask)
        torch._foreach_copy_(params, list(stacked.unbind(0)))


def setup_optimizer(model: GPT) -> MuonAdamW:
    width = model.config.n_embd
    scale = (width / 768) ** -0.5  # AdamW LRs were tuned at width 768 (nanochat)
    betas = (ADAM_BETA1, ADAM_BETA2)
    embeds = [model.wte.weight, *model.value_embeds.parameters()]
    matrices = list(model.blocks.parameters())
    groups = [
        dict(params=[model.lm_head.weight], lr=UNEMBEDDING_LR * scale, betas=betas),
        dict(params=embeds, lr=EMBEDDING_LR * scale, betas=betas),
        dict(params=[model.resid_lambdas], lr=SCALAR_LR * 0.01, betas=betas),
        dict(params=[model.x0_lambdas], lr=SCALAR_LR, betas=(0.96, 0.95)),
    ]
    for group in groups:
        group.update(kind="adamw", eps=1e-10, weight_decay=0.0)
    for shape in sorted({p.shape for p in matrices}):
        group = [p for p in matrices if p.shape == shape]
        groups.append(dict(kind="muon", params=group, lr=MATRIX_LR, momentum=MUON_MOMENTUM,
                           ns_steps=5, beta2=0.95, weight_decay=WEIGHT_DECAY))
    n_grouped = sum(len(g["params"]) for g in groups)
    assert n_grouped == len(list(model.parameters())), "a parameter has no optimizer group"
    optimizer = MuonAdamW(groups)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    return optimizer


# ---------------------------------------------------------------------------
# Schedules, all driven by progress = training time / TIME_BUDGET
# ---------------------------------------------------------------------------


def lr_multiplier(progress: float) -> float:
    if progress < WARMUP_RATIO:
        return progress / WARMUP_RATIO
    if progress < 1.0 - WARMDOWN_RATIO:
        return 1.0
    cooldown = (1.0 - progress) / WARMDOWN_RATIO
    return cooldown + (1.0 - cooldown) * FINAL_LR_FRAC


def muon_momentum(progress: float) -> float:
    frac = min(progress / MUON_RAMP_RATIO, 1.0) if MUON_RAMP_RATIO > 0 else 1.0
    return (1 - frac) * MUON_MOMENTUM_START + frac * MUON_MOMENTUM


# ---------------------------------------------------------------------------
# Device and configuration
# ---------------------------------------------------------------------------


def detect_device() -> torch.device:
    if os.environ.get("AUTORESEARCH_DEVICE"):  # e.g. "cpu" to benchmark the CPU path anywhere
        return torch.device(os.environ["AUTORESEARCH_DEVICE"])
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def fa3_available() -> bool:
    """Flash Attention 3 on Hopper (sm90) when its kernel package imports; SDPA otherwise."""
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
        return False
    try:
        import flash_attn_interface  # noqa: F401  (FA3's hopper/ build)
    except ImportError:
        return False
    return True


def hyperparameters(device: torch.device) -> dict:
    """The CUDA_* values on an NVIDIA GPU, the CPU_* values on CPU and MPS."""
    cuda = device.type == "cuda"
    return dict(
        depth=CUDA_DEPTH if cuda else CPU_DEPTH,
        aspect_ratio=CUDA_ASPECT_RATIO if cuda else CPU_ASPECT_RATIO,
        head_dim=CUDA_HEAD_DIM if cuda else CPU_HEAD_DIM,
        window_pattern=CUDA_WINDOW_PATTERN if cuda else CPU_WINDOW_PATTERN,
        total_batch_size=CUDA_TOTAL_BATCH_SIZE if cuda else CPU_TOTAL_BATCH_SIZE,
        device_batch_size=CUDA_DEVICE_BATCH_SIZE if cuda else CPU_DEVICE_BATCH_SIZE,
        value_embeds=CUDA_VALUE_EMBEDS if cuda else CPU_VALUE_EMBEDS,
    )


def model_config(vocab_size: int, device: torch.device) -> GPTConfig:
    hp = hyperparameters(device)
    head_dim = hp["head_dim"]
    width = -(-hp["depth"] * hp["aspect_ratio"] // head_dim) * head_dim  # round up
    return GPTConfig(
        sequence_len=MAX_SEQ_LEN, vocab_size=vocab_size, n_layer=hp["depth"],
        n_head=width // head_dim, n_embd=width, window_pattern=hp["window_pattern"],
        value_embeds=hp["value_embeds"], softcap=SOFTCAP, rope_base=ROPE_BASE,
        use_fa3=device.type == "cuda" and fa3_available(),
    )


# Peak dense bf16 FLOP/s, for MFU. MFU reads 0.00 where the peak is unknown (CPU, MPS).
gpu_peak_flops = {"H100": 989.5e12, "H200": 989.5e12, "B200": 2250e12, "A100": 312e12,
                  "L40S": 362e12, "4090": 165e12}


def peak_flops(device: torch.device) -> float:
    if device.type != "cuda":
        return 0.0
    name = torch.cuda.get_device_name()
    return next((f for key, f in gpu_peak_flops.items() if key in name), 0.0)


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated; elsewhere the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def main() -> None:
    t_start = time.time()
    device = detect_device()
    cuda = device.type == "cuda"
    seed = int(os.environ.get("AUTORESEARCH_SEED", "42"))
    torch.manual_seed(seed)
    if cuda:
        torch.set_float32_matmul_precision("high")
    # bf16 autocast on CUDA only: on CPU it made the backward pass far slower (CPU forks).
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()

    hp = hyperparameters(device)
    tokenizer = Tokenizer.from_directory()
    config = model_config(tokenizer.get_vocab_size(), device)
    model = build_model(config).to(device)
    num_params = sum(p.numel() for p in model.parameters())
    optimizer = setup_optimizer(model)
    # torch.compile pays off on CUDA; on CPU it costs more compile time than it saves here.
    train_model = torch.compile(model, dynamic=False) if cuda else model
    tokens_per_fwdbwd = hp["device_batch_size"] * MAX_SEQ_LEN
    assert hp["total_batch_size"] % tokens_per_fwdbwd == 0, "total batch: a multiple of rows*seq"
    grad_accum = hp["total_batch_size"] // tokens_per_fwdbwd
    flops_per_step = model.num_flops_per_token() * hp["total_batch_size"]
    peak = peak_flops(device)

    print(f"Device: {device} | seed {seed} | time budget {TIME_BUDGET:g}s")
    print(f"Model: {asdict(config)}")
    print(f"Parameters: {num_params:,} | grad accumulation steps: {grad_accum}")

    rows = hp["device_batch_size"]
    train_loader = make_dataloader(tokenizer, rows, MAX_SEQ_LEN, "train", device=device)
    x, y, epoch = next(train_loader)
    # Early steps are not timed: on CUDA they include compilation (Karpathy skips 10).
    untimed_steps = 10 if cuda else 1
    training_time = 0.0
    step = 0
    smooth_loss = 0.0
    last_log = 0.0
    tty = sys.stdout.isatty()

    while True:
        synchronize(device)
        t0 = time.time()
        for _ in range(grad_accum):
            with autocast:
                loss = train_model(x, y)
            train_loss = loss.detach()
            (loss / grad_accum).backward()
            x, y, epoch = next(train_loader)
        progress = min(training_time / TIME_BUDGET, 1.0)
        lrm = lr_multiplier(progress)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * lrm
            if group["kind"] == "muon":
                group["momentum"] = muon_momentum(progress)
                group["weight_decay"] = WEIGHT_DECAY * (1 - progress)
        optimizer.step()
        model.zero_grad(set_to_none=True)

        loss_f = train_loss.item()
        if not math.isfinite(loss_f) or loss_f > 100:  # fail fast: NaN or exploding loss
            print(f"\nFAIL: training loss {loss_f} at step {step}")
            sys.exit(1)
        synchronize(device)
        dt = time.time() - t0
        if step >= untimed_steps:
            training_time += dt

        smooth_loss = 0.9 * smooth_loss + 0.1 * loss_f
        debiased = smooth_loss / (1 - 0.9 ** (step + 1))
        mfu = 100 * flops_per_step / dt / peak if peak else 0.0
        line = (f"step {step:05d} ({100 * progress:.1f}%) | loss: {debiased:.4f} | "
                f"lrm: {lrm:.2f} | dt: {dt * 1000:.0f}ms | "
                f"tok/sec: {hp['total_batch_size'] / dt:,.0f} | mfu: {mfu:.1f}% | epoch: {epoch} | "
                f"remaining: {max(0.0, TIME_BUDGET - training_time):.0f}s")
        if tty:
            print("\r" + line + "    ", end="", flush=True)
        elif time.time() - last_log >= 10 or step < 3:  # logs stay readable in a file
            print(line, flush=True)
            last_log = time.time()
        # The loss curve for early stopping (`METRIC name=value progress=F`, see the harness's
        # metrics.py): one point each time training crosses a 2.5% mark of the budget.
        timed = training_time / TIME_BUDGET
        before = (training_time - (dt if step >= untimed_steps else 0.0)) / TIME_BUDGET
        if math.floor(timed / 0.025) > math.floor(before / 0.025):
            print(f"{chr(10) if tty else ''}METRIC train_loss={debiased:.6f} "
                  f"progress={min(timed, 1.0):.4f}", flush=True)

        if step == 0:  # Python's GC causes long stalls; freeze what exists after step 0
            gc.collect()
            gc.freeze()
            gc.disable()
        elif (step + 1) % 5000 == 0:
            gc.collect()
        step += 1
        # The harness keeps the budget: its clock starts at this line and it creates the stop
        # file when time is up (its rule; see the README). Our own clock is the fallback.
        if step == 1:
            print("AUTORESEARCH started", flush=True)
        stop_file = os.environ.get("AUTORESEARCH_STOP_FILE")
        stopped = bool(stop_file) and os.path.exists(stop_file)
        if step > untimed_steps and (training_time >= TIME_BUDGET or stopped):
            break

    print()
    timed_steps = step - untimed_steps
    tok_per_sec = timed_steps * hp["total_batch_size"] / training_time
    mfu = 100 * flops_per_step * timed_steps / training_time / peak if peak else 0.0
    print(f"Throughput: {tok_per_sec:,.0f} tokens/s over {timed_steps} timed steps")
    stats = {
        "training_seconds": training_time,
        "total_seconds": time.time() - t_start,
        "peak_vram_mb": peak_memory_mb(device),
        "mfu_percent": mfu,
        "total_tokens_M": step * hp["total_batch_size"] / 1e6,
        "num_steps": step,
        "num_params_M": num_params / 1e6,
        "depth": config.n_layer,
    }
    # Hands the model to the harness's evaluate phase, or (run by hand) evaluates it and
    # prints Karpathy's summary block.
    finish(model, config, stats, tokenizer, rows, autocast)


if __name__ == "__main__":
    main()
