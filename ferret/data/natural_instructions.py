"""Natural Instructions v2 (Super-NaturalInstructions) from a local clone: one training task = one client.

Input: a clone (or release archive) of github.com/allenai/natural-instructions, i.e. a folder
with ``tasks/<task>.json`` and ``splits/<split>/{train,test}_tasks.txt``. Preprocessing follows
the official loader (Ferret and FedKSeed ``utils_data/natural_instruction_loader.py``),
re-implemented:

- Instances whose ``input`` has ``max_length`` characters or more are dropped (the official
  filter compares the input's *character* count with the token limit ``--max_length``).
- Training tasks (in split-file order): a task with fewer than 20 instances left is skipped (the
  minimum-size rule); otherwise a seeded 20 % of its instances (``int(0.2 n)``, without
  replacement) becomes one client's data.
- Test tasks are evaluated (training tasks never are): a task with more than 20 instances left
  is sampled down to ``max(20, int(0.02 n))`` instances, a smaller one is kept whole.
- Each instance becomes (instruction = ``Definition[0]``, input, output = ``output[0]``) with the
  Alpaca template.

Choices where the official code has none:

- Task files listed in a split but absent from ``tasks/`` are skipped with one note on stderr
  (so a partial copy works); no training or no test task present is an error.
- ``num_clients`` takes the first ``num_clients`` qualifying training tasks in split order (the
  official code uses all of them, overwriting ``--num_clients``; set ``num_clients`` to their
  number, which the error for too large a value states). Fewer than all is noted on stderr.
- Sampling uses a per-task generator from (seed, task name), so adding or removing a task never
  changes another task's sample (official: one global NumPy stream). The test-task sample does
  not depend on the seed at all, so every run of a grid is scored on the same instances.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ferret.data.partition import rng
from ferret.data.records import read_json, require_path
from ferret.data.types import DataError, Example, FederatedData

NAME = "natural-instructions"
MIN_TASK_SIZE = 20  # training tasks with fewer instances (after the length filter) are skipped
TRAIN_FRACTION = 0.2  # share of a training task's instances that its client keeps
EVAL_FRACTION = 0.02  # share of a test task's instances evaluated ...
EVAL_MIN = 20  # ... but at least this many (all of a task that has no more)


def split_tasks(root: Path, split: str, part: str) -> list[str]:
    """Task names listed in ``splits/<split>/<part>_tasks.txt``, in file order."""
    path = root / "splits" / split / f"{part}_tasks.txt"
    if not path.is_file():
        raise DataError(f"{NAME}: split file not found: {path}")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DataError(f"{NAME}: split file {path} lists no tasks")
    return names


def read_task(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """(definition, instances) of one task file; errors name the file and the instance index."""
    data = read_json(NAME, path)  # the source files hold bare NaN (e.g. "URL": [NaN]); json accepts it
    if not isinstance(data, dict):
        raise DataError(f"{NAME}: {path}: expected a task object, got {type(data).__name__}")
    definition = data.get("Definition")
    if isinstance(definition, list):
        definition = definition[0] if definition else None
    if not isinstance(definition, str):
        raise DataError(f"{NAME}: {path}: missing or empty 'Definition'")
    instances = data.get("Instances")
    if not isinstance(instances, list):
        raise DataError(f"{NAME}: {path}: missing 'Instances' list")
    for i, inst in enumerate(instances):
        ok = (isinstance(inst, dict) and isinstance(inst.get("input"), str)
              and isinstance(inst.get("output"), list) and inst["output"] and isinstance(inst["output"][0], str))
        if not ok:
            raise DataError(f"{NAME}: {path} instance {i}: needs a text 'input' and a non-empty 'output' list")
    return definition, instances


def _examples(task: str, definition: str, instances: list[dict[str, Any]]) -> list[Example]:
    return [Example(task=task, instruction=definition, input=inst["input"], output=inst["output"][0])
            for inst in instances]


def _sample(instances: list[dict[str, Any]], k: int, seed: int, task: str, part: str) -> list[dict[str, Any]]:
    picks = rng(seed, NAME, part, task).choice(len(instances), size=k, replace=False)
    return [instances[i] for i in sorted(picks.tolist())]


def _present(root: Path, names: list[str], part: str) -> list[tuple[str, Path]]:
    found = [(n, root / "tasks" / f"{n}.json") for n in names]
    present = [(n, p) for n, p in found if p.is_file()]
    if len(present) < len(found):
        print(f"{NAME}: {len(found) - len(present)} of {len(found)} {part} tasks listed in the split have no "
              f"file under {root / 'tasks'}; using the {len(present)} present", file=sys.stderr)
    return present


def load_natural_instructions(root: str | Path, num_clients: int, seed: int, max_length: int = 1024,
                              split: str = "default") -> FederatedData:
    """Clients = the first num_clients qualifying training tasks; eval = the sampled test tasks."""
    root = require_path(NAME, str(root))
    if not (root / "tasks").is_dir():
        raise DataError(f"{NAME}: {root} has no tasks/ folder (expected a natural-instructions clone)")
    train_names = split_tasks(root, split, "train")
    test_names = split_tasks(root, split, "test")

    clients: list[list[Example]] = []
    client_tasks: list[str] = []
    for task, path in _present(root, train_names, "train"):
        definition, instances = read_task(path)
        kept = [inst for inst in instances if len(inst["input"]) < max_length]
        if len(kept) < MIN_TASK_SIZE:
            continue
        chosen = _sample(kept, int(len(kept) * TRAIN_FRACTION), seed, task, "train")
        clients.append(_examples(task, definition, chosen))
        client_tasks.append(task)
    if not clients:
        raise DataError(f"{NAME}: no training task under {root} has {MIN_TASK_SIZE} or more instances "
                        f"with inputs under {max_length} characters")
    if num_clients > len(clients):
        raise DataError(f"{NAME}: num_clients={num_clients} but only {len(clients)} training tasks under {root} "
                        f"qualify (one client per task); set num_clients={len(clients)}")
    if num_clients < len(clients):
        print(f"{NAME}: using the first {num_clients} of {len(clients)} qualifying training tasks", file=sys.stderr)

    eval_set: list[Example] = []
    for task, path in _present(root, test_names, "test"):
        definition, instances = read_task(path)
        kept = [inst for inst in instances if len(inst["input"]) < max_length]
        if len(kept) > EVAL_MIN:
            # Fixed across seeds (official: the run's NumPy stream), so every run is scored alike.
            kept = _sample(kept, max(EVAL_MIN, int(EVAL_FRACTION * len(kept))), 0, task, "eval")
        eval_set.extend(_examples(task, definition, kept))
    if not eval_set:
        raise DataError(f"{NAME}: no test task under {root} has instances with inputs under {max_length} characters")
    return FederatedData(clients=clients[:num_clients], eval=eval_set, client_tasks=client_tasks[:num_clients],
                         name=NAME)
