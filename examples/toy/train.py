"""Toy task: fit a quadratic by gradient descent. Pure Python, a fraction of a second per run.

The mutable surface is the UPPER_CASE constants below (and anything else in this
file). The defaults underfit on purpose, so a sweep has something to find.
The metric is printed in Karpathy's summary format after a `---` line.
"""

from __future__ import annotations

import os
import random
import time

LEARNING_RATE = 0.02
STEPS = 150
MOMENTUM = 0.0
WEIGHT_DECAY = 0.01
INIT_SCALE = 0.1


def make_data(n: int, seed: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    xs = [rng.uniform(-1.0, 1.0) for _ in range(n)]
    return [(x, 3.0 * x * x - 2.0 * x + 0.5 + rng.gauss(0.0, 0.05)) for x in xs]


def loss(params: list[float], data: list[tuple[float, float]]) -> float:
    a, b, c = params
    return sum((a * x * x + b * x + c - y) ** 2 for x, y in data) / len(data)


def main() -> None:
    t0 = time.time()
    budget = float(os.environ.get("AUTORESEARCH_TIME_BUDGET", "10"))
    rng = random.Random(int(os.environ.get("AUTORESEARCH_SEED", "42")))
    train, val = make_data(200, seed=0), make_data(100, seed=1)
    params = [rng.gauss(0.0, INIT_SCALE) for _ in range(3)]
    velocity = [0.0, 0.0, 0.0]
    steps_done = 0
    for _ in range(STEPS):
        grads = [0.0, 0.0, 0.0]
        for x, y in train:
            err = 2.0 * (params[0] * x * x + params[1] * x + params[2] - y) / len(train)
            for i, feat in enumerate((x * x, x, 1.0)):
                grads[i] += err * feat
        for i in range(3):
            velocity[i] = MOMENTUM * velocity[i] + grads[i] + WEIGHT_DECAY * params[i]
            params[i] -= LEARNING_RATE * velocity[i]
        steps_done += 1
        if time.time() - t0 > budget:
            break
    print("---")
    print(f"val_loss:         {loss(params, val):.6f}")
    print(f"training_seconds: {time.time() - t0:.1f}")
    print(f"num_steps:        {steps_done}")


if __name__ == "__main__":
    main()
