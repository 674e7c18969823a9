"""A small residual policy/value network trained on CPU from a playstream dataset.

    python examples/train.py --data DATASET_DIR --games GAMES.db [--steps 300] [--follow]

DATASET_DIR is what `playstream export --val-fraction F --output DIR` or the finalizer
publishes: its train split is streamed through `PlaystreamDataset` and a DataLoader, and its
val split (games chosen by a hash of game_id, so no game is in both) is held out. ``--follow``
trains from the newest published version at every epoch boundary. The game file is replayed
to count each held-out position's legal moves (rows carry no legal mask), for the baseline
of a uniform distribution over the legal moves. The last line is

    val_policy_ce=X uniform_legal_ce=Y val_value_mse=Z baseline_value_mse=W

and a learnable dataset gives X < Y and Z < W (W predicts 0 for every value).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from playstream.games import get_game
from playstream.gamefiles import open_game_source
from playstream.training import PlaystreamDataset, resolve


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class Net(nn.Module):
    """AlphaZero's shape, small: a trunk of residual blocks, a policy head over the H*W
    actions (off-board cells masked; policy index = row * W + column) and a tanh value head
    that also sees the globals.

    The value head reads the trunk through global pooling (mean and max of each channel over
    the on-board cells, as KataGo's does) and one linear layer, initialised to predict 0.
    With a few dozen games a value head per cell memorises where each training game's stones
    were: on 40 square8 MCTS games its held-out MSE went from 1.0 to 1.5-2.0 while the
    training MSE fell to 0.4. Pooling asks "is there a threat anywhere", which transfers to
    games it has not seen."""

    def __init__(self, in_channels: int, globals_: int, valid: np.ndarray, width: int,
                 blocks: int) -> None:
        super().__init__()
        cells = valid.size
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.trunk = nn.Sequential(*(Block(width) for _ in range(blocks)))
        # Fully convolutional policy (a logit per cell, as KataGo's head), plus a bias per
        # cell for where on the board moves tend to be.
        self.policy = nn.Conv2d(width, 1, 1)
        self.policy_bias = nn.Parameter(torch.zeros(cells))
        self.value_fc = nn.Linear(2 * width + globals_, 1)
        nn.init.zeros_(self.value_fc.weight)
        nn.init.zeros_(self.value_fc.bias)
        self.register_buffer("off_board", torch.from_numpy(~valid.reshape(-1)))
        self.register_buffer("on_board",
                             torch.from_numpy(valid.reshape(-1).astype(np.float32)))

    def forward(self, features: torch.Tensor, globals_: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.trunk(self.stem(features))
        logits = self.policy(x).flatten(1) + self.policy_bias
        logits = logits.masked_fill(self.off_board, -1e9)
        cells = x.flatten(2)
        mean = (cells * self.on_board).sum(2) / self.on_board.sum()
        peak = cells.masked_fill(self.off_board, -1e9).amax(2)
        value = self.value_fc(torch.cat([mean, peak, globals_], 1))
        return logits, torch.tanh(value.squeeze(1))


def losses(net: Net, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row policy cross-entropy against the (soft) target and value squared error."""
    logits, value = net(batch["features"], batch["globals"])
    policy_ce = -(batch["policy"] * F.log_softmax(logits, 1)).sum(1)
    return policy_ce, (value - batch["values"]) ** 2


def legal_counts(games: Path, game_name: str, board_type: str, num_players: int,
                 wanted: set[str]) -> dict[tuple[str, int], int]:
    """(game_id, move_number) -> number of legal moves there, by replaying the games."""
    game = get_game(game_name)
    counts: dict[tuple[str, int], int] = {}
    for item in open_game_source(games):
        data = item.data
        if data is None or data.get("game_id") not in wanted:
            continue
        state = game.new_state(board_type, num_players)
        for t, move in enumerate(data["moves"]):
            counts[(data["game_id"], t)] = len(game.legal_moves(state))
            game.apply_move(state, move)
    return counts


def evaluate(net: Net, data: str, games: Path, batch_size: int) -> dict[str, float]:
    snapshot = resolve(data, "val")
    config = snapshot.config
    val = PlaystreamDataset(data, batch_size=batch_size, split="val", shuffle=False,
                            with_ids=True)
    net.eval()
    policy_ce, value_se, baseline_se, keys = [], [], [], []
    with torch.no_grad():
        for batch in DataLoader(val, batch_size=None):
            p, v = losses(net, batch)
            policy_ce.append(p)
            value_se.append(v)
            baseline_se.append(batch["values"] ** 2)
            keys += zip(batch["game_id"].tolist(), batch["move_number"].tolist())
    net.train()
    legal = legal_counts(games, config.game, config.board_type, config.num_players,
                         {g for g, _ in keys})
    missing = [k for k in keys if k not in legal]
    if missing:
        sys.exit(f"train.py: {len(missing)} held-out rows have no game in {games} "
                 f"(first: {missing[0]}); pass the game file the dataset was exported from")
    return {"val_policy_ce": torch.cat(policy_ce).mean().item(),
            "uniform_legal_ce": float(np.mean([math.log(legal[k]) for k in keys])),
            "val_value_mse": torch.cat(value_se).mean().item(),
            "baseline_value_mse": torch.cat(baseline_se).mean().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder with a val split")
    parser.add_argument("--games", required=True, type=Path,
                        help="the .db/.jsonl game file, replayed for legal-move counts")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3,
                        help="initial learning rate, decayed to 0 over --steps (cosine)")
    parser.add_argument("--value-weight", type=float, default=0.25,
                        help="weight of the value MSE in the loss (the policy's is 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads of the training step (0: torch's default)")
    parser.add_argument("--augment", action="store_true", help="random board symmetries")
    parser.add_argument("--follow", action="store_true",
                        help="switch to each newly published version at an epoch boundary")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = resolve(args.data).config
    valid = get_game(config.game).geometry(config.board_type).valid
    net = Net(len(config.channels), len(config.global_names), valid, args.width, args.blocks)
    optimiser = torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=1e-4)
    # Outcomes are noisy targets (one ±1 per game for all its positions): a constant rate
    # leaves the last steps' noise in the value head (held-out MSE moved by 0.2 between
    # steps 250 and 300); decaying it averages that noise out.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda done: 0.5 * (1.0 + math.cos(math.pi * min(done, args.steps)
                                                        / args.steps)))
    train = PlaystreamDataset(args.data, batch_size=args.batch_size, seed=args.seed,
                              augment=args.augment, follow=args.follow)
    loader = DataLoader(train, batch_size=None, num_workers=args.workers,
                        persistent_workers=args.workers > 0)
    step, epoch, started = 0, 0, time.monotonic()
    while step < args.steps:
        train.set_epoch(epoch)
        for batch in train.track(loader):
            policy_ce, value_se = losses(net, batch)
            # Every position of a game shares its outcome, so the value loss sees far fewer
            # independent targets than rows and overfits first: a lower weight slows it
            # (AlphaGo went further and trained its value net on one position per game).
            loss = policy_ce.mean() + args.value_weight * value_se.mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            if step % 100 == 0:
                print(f"step={step} epoch={epoch} policy_ce={policy_ce.mean().item():.3f} "
                      f"value_mse={value_se.mean().item():.3f} "
                      f"seconds={time.monotonic() - started:.1f}", flush=True)
            if step == args.steps:
                break
        epoch += 1
    metrics = evaluate(net, args.data, args.games, args.batch_size)
    print(" ".join(f"{name}={value:.4f}" for name, value in metrics.items()))


if __name__ == "__main__":
    main()
