"""Workbench responsiveness, each figure against a baseline measured in the same run.

1. Graph pane refresh with 500 nodes (set_graph + rendering every visible line), target < 50 ms;
   baseline: Textual's own Tree widget given the same 500 nodes (clear + add + render).
2. Key latency on the real app (down arrow in the search graph until the cursor has moved and the
   details pane was redrawn) while the engine worker thread trains a small transformer with torch,
   target < 100 ms; baseline: the same keys with the worker idle.

Usage: python scripts/bench_tui.py [--nodes 500] [--repeats 30] [--keys 40]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from textual.app import App, ComposeResult
from textual.events import Key
from textual.widgets import Tree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.fixture_run import build_fixture_run  # noqa: E402

from engine.seed import seed_everything  # noqa: E402
from pioneer_tui.app import EngineSession, create_app  # noqa: E402
from store import Store  # noqa: E402
from widgets.search_graph import GraphNode, SearchGraph, node_label  # noqa: E402

MIN_STEPS = 10
STATUSES = ("evaluated", "evaluated", "accepted", "rejected", "rolled_back", "vetoed", "training")


def synthetic_graph(n: int, seed: int = 0) -> list[GraphNode]:
    """An MCGS-shaped tree: most expansions continue the recent best, some branch off older nodes."""
    rng = random.Random(seed)
    nodes = [GraphNode("n0000", None, name="n0000", status="accepted", score=0.5, regressions=0)]
    for i in range(1, n):
        parent = nodes[max(0, i - 1 - int(rng.expovariate(0.3)))]
        nodes.append(GraphNode(
            f"n{i:04d}", parent.id, name=f"n{i:04d}", iteration=i, status=rng.choice(STATUSES),
            score=round(min(0.999, 0.5 + i / (2 * n) + rng.uniform(-0.05, 0.05)), 3), regressions=rng.randint(0, 4),
            operator=rng.choice(("expand", "evolve", "fuse")), modification=f"learning_rate {rng.random():.4f} → 2e-4"))
    return nodes


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class PaneApp(App):
    def compose(self) -> ComposeResult:
        yield SearchGraph(id="graph")
        yield Tree("search", id="tree")


async def bench_graph(n: int, repeats: int) -> tuple[list[float], list[float]]:
    nodes = synthetic_graph(n)
    app = PaneApp()
    async with app.run_test(size=(120, 44)) as pilot:
        graph, tree = app.query_one(SearchGraph), app.query_one(Tree)
        await pilot.pause()
        height = graph.size.height
        ours, baseline = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            graph.set_graph(nodes, best_id=nodes[-1].id)
            for y in range(height):
                graph.render_line(y)
            ours.append((time.perf_counter() - t0) * 1000)

            t0 = time.perf_counter()
            tree.clear()
            handles = {None: tree.root}
            for node in nodes:
                label = "".join(t for t, _ in node_label(node, best=False, deployed=False, hidden=0))
                handles[node.id] = handles[node.parent_id].add(label, expand=True)
            tree.root.expand_all()
            for y in range(tree.size.height):
                tree.render_line(y)
            baseline.append((time.perf_counter() - t0) * 1000)
            await pilot.pause()
        assert graph.line_count >= 1
    return ours, baseline


def train_until(stop: threading.Event, counter: list[int]) -> None:
    """A real CPU-bound training step loop: a 2-layer transformer encoder, AdamW, batch 16 x 32."""
    import torch

    seed_everything(0)
    model = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=512, batch_first=True), 2)
    head = torch.nn.Linear(128, 30)
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=1e-4)
    x = torch.randn(16, 32, 128)
    y = torch.randint(0, 30, (16,))
    while not stop.is_set():
        loss = torch.nn.functional.cross_entropy(head(model(x).mean(dim=1)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        counter[0] += 1


async def key_latencies(app, pilot, keys: int, until=lambda: True, max_s: float = 300.0) -> list[float]:
    """Down/up arrows alternately, one every 50 ms (fast typing), at least `keys` of them and until
    `until()` holds; latency = key posted -> cursor moved and details pane redrawn."""
    screen = app.main_screen
    graph = screen.query_one(SearchGraph)
    graph.focus()
    await pilot.pause()
    out: list[float] = []
    deadline = time.perf_counter() + max_s
    i = -1
    while len(out) < keys or (not until() and time.perf_counter() < deadline):
        i += 1
        key = "down" if i % 2 == 0 else "up"
        before = graph.cursor_line
        redrawn = asyncio.Event()
        original = screen._show_details

        def show(node_id, _original=original, _redrawn=redrawn):
            _original(node_id)
            _redrawn.set()

        screen._show_details = show
        t0 = time.perf_counter()
        app.post_message(Key(key, None))
        await redrawn.wait()
        out.append((time.perf_counter() - t0) * 1000)
        screen._show_details = original
        assert graph.cursor_line != before
        await asyncio.sleep(0.05)
    return out


async def bench_keys(keys: int) -> tuple[list[float], list[float], float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "ws")
        build_fixture_run(store)
        stop, counter = threading.Event(), [0]

        def hook(session: EngineSession) -> None:
            train_until(stop, counter)

        app = create_app(store, start_demo=hook)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            idle = await key_latencies(app, pilot, keys)
            app.action_demo()  # the real engine worker path
            while counter[0] < 3:  # warm up: the model is built and stepping
                await asyncio.sleep(0.05)
            steps0, t0 = counter[0], time.perf_counter()
            # keep pressing keys until the trainer has done MIN_STEPS steps inside the window
            busy = await key_latencies(app, pilot, keys, until=lambda: counter[0] - steps0 >= MIN_STEPS)
            rate = (counter[0] - steps0) / (time.perf_counter() - t0)
            stop.set()
            await app.workers.wait_for_complete()
        store.close()
    return idle, busy, rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--keys", type=int, default=40)
    args = parser.parse_args()

    ours, tree = asyncio.run(bench_graph(args.nodes, args.repeats))
    m_ours, m_tree = statistics.median(ours), statistics.median(tree)
    print(f"graph pane refresh, {args.nodes} nodes (layout + render visible lines), {args.repeats} runs:")
    print(f"  SearchGraph        median {m_ours:7.2f} ms   p95 {percentile(ours, 0.95):7.2f} ms   "
          f"target < 50 ms: {'PASS' if m_ours < 50 else 'FAIL'}")
    print(f"  baseline: Tree     median {m_tree:7.2f} ms   p95 {percentile(tree, 0.95):7.2f} ms")
    print(f"  ratio SearchGraph / Tree = {m_ours / m_tree:.3f} ({m_tree / m_ours:.1f}x faster)")

    print(f"key latency on the real app (arrow key -> cursor moved + details redrawn), >= {args.keys} keys,")
    print(f"while the engine worker trains until it has done {MIN_STEPS} steps:")
    idle, busy, rate = asyncio.run(bench_keys(args.keys))
    m_idle, m_busy, p95 = statistics.median(idle), statistics.median(busy), percentile(busy, 0.95)
    print(f"  baseline: worker idle                {len(idle):5d} keys  median {m_idle:6.2f} ms   "
          f"p95 {percentile(idle, 0.95):6.2f} ms")
    print(f"  worker training ({rate:5.2f} steps/s)    {len(busy):5d} keys  median {m_busy:6.2f} ms   "
          f"p95 {p95:6.2f} ms   target < 100 ms: {'PASS' if p95 < 100 else 'FAIL'}")
    print(f"  ratio training / idle (median) = {m_busy / m_idle:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
