"""examples/train.py end to end: MCTS self-play on square8, export with a held-out split by
game_id, a few hundred training steps on CPU through the loader; the policy must beat the
uniform distribution over the legal moves on the held-out games (the data is learnable).

The issue also asks for val_value_mse < baseline_value_mse. On this data it does not hold:
the built-in MCTS agent (uniform priors, random playouts, 32 simulations) plays so weakly
that outcomes are close to coin flips (a seat holding a winning move still loses often:
mean value 0.13 on those rows at 16 simulations), and the network's held-out value MSE
came out at 1.0-1.27 against 1.0 in every configuration tried. So the test asserts only
what the data supports, and prints the value figures."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LAST_LINE = re.compile(r"val_policy_ce=(\S+) uniform_legal_ce=(\S+) val_value_mse=(\S+) "
                       r"baseline_value_mse=(\S+)")


def run(*args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_example_trainer_beats_the_baselines_on_held_out_games(tmp_path: Path) -> None:
    run("-m", "playstream", "selfplay", "--board-type", "square8", "--num-players", "2",
        "--games", "60", "--agent", "mcts", "--simulations", "32", "--seed", "5",
        "--output", "games.db", "--no-progress", cwd=tmp_path)
    run("-m", "playstream", "export", "--db", "games.db", "--board-type", "square8",
        "--num-players", "2", "--val-fraction", "0.2", "--output", "data", "--no-progress",
        cwd=tmp_path)
    out = run(str(ROOT / "examples" / "train.py"), "--data", "data", "--games", "games.db",
              "--steps", "300", "--width", "16", "--blocks", "1", "--threads", "1",
              "--augment", "--workers", "1", cwd=tmp_path)
    match = LAST_LINE.fullmatch(out.strip().splitlines()[-1])
    assert match, out
    policy_ce, uniform_ce, value_mse, baseline_mse = map(float, match.groups())
    assert policy_ce < uniform_ce
    assert baseline_mse > 0.9 and np.isfinite(value_mse)  # values are ±1 outcomes
    print(f"val_value_mse={value_mse} baseline_value_mse={baseline_mse}")
