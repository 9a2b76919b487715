"""The search graph, persisted through store.runs: nodes are pipelines with their results, edges are
the modifications between them (a fused node has one edge from each source).

Every mutation writes the store (and its event, when a bus is given) in one transaction, so a run
killed at any moment reloads to exactly the graph it had. Node ids are `<run>.n<index>`, so a
resumed run names new nodes the way an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.events import EngineEvent, EventBus, NodeAdded, NodeEvaluated
from engine.search.pipeline import Pipeline
from store import Store

NODE_STATUSES = ("proposed", "approved", "training", "evaluated", "failed", "vetoed")
PENDING = ("proposed", "approved", "training")
OPERATORS = ("root", "expand", "evolve", "fuse")


@dataclass
class Node:
    id: str
    pipeline: Pipeline
    parent_id: str | None
    operator: str
    iteration: int
    status: str = "proposed"
    rationale: str | None = None
    score: float | None = None
    regressions: int | None = None
    visits: int = 0
    total_reward: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    sources: tuple[str, ...] = ()  # the other parents of a fused node
    children: list[str] = field(default_factory=list)
    model_id: str | None = None
    dataset_version_id: str | None = None

    @property
    def mean_reward(self) -> float:
        return self.total_reward / self.visits if self.visits else 0.0

    @property
    def exhausted(self) -> bool:
        """Set when expanding the node yielded nothing new or the policy rolled it back."""
        return bool(self.metrics.get("exhausted"))


def best_of(nodes: Any) -> Any:
    """The node with the highest score; of equal scores the one that broke fewer passes (what the gates
    prefer: a tie must not show the one with 7 regressions as best beside one with 1), then the oldest.
    Anything with `score` and `regressions` (the engine's nodes, the TUI's)."""
    return max(nodes, key=lambda n: (n.score, -(n.regressions or 0)), default=None)


class SearchGraph:
    def __init__(self, store: Store, run_id: str, bus: EventBus | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.bus = bus
        self.nodes: dict[str, Node] = {}  # insertion order = creation order
        self._by_hash: dict[str, str] = {}

    # -- reading ----------------------------------------------------------------------------
    @classmethod
    def load(cls, store: Store, run_id: str, bus: EventBus | None = None) -> SearchGraph:
        graph = cls(store, run_id, bus)
        edges_into: dict[str, list[dict[str, Any]]] = {}
        for edge in store.runs.edges(run_id):
            edges_into.setdefault(edge["dst"], []).append(edge)
        for row in store.runs.nodes(run_id):
            into = edges_into.get(row["id"], [])
            primary = next((e for e in into if e["src"] == row["parent_id"]), None)
            node = Node(
                id=row["id"], pipeline=Pipeline.from_dict(row["pipeline"]), parent_id=row["parent_id"],
                operator=primary["operator"] if primary else "root", iteration=row["iteration"],
                status=row["status"], rationale=row["rationale"], score=row["score"],
                regressions=row["regressions"], visits=row["visits"], total_reward=row["total_reward"],
                metrics=row["metrics"], sources=tuple(e["src"] for e in into if e["src"] != row["parent_id"]),
                model_id=row["model_id"], dataset_version_id=row["dataset_version_id"],
            )
            graph._index(node)
        return graph

    def get(self, node_id: str) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise KeyError(f"node {node_id} is not in run {self.run_id}") from None

    def find(self, pipeline_hash: str) -> Node | None:
        node_id = self._by_hash.get(pipeline_hash)
        return self.nodes[node_id] if node_id else None

    def roots(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.parent_id is None]

    def path(self, node_id: str) -> list[Node]:
        """Root to node along primary parents: the trajectory that produced it."""
        chain = [self.get(node_id)]
        while chain[-1].parent_id is not None:
            chain.append(self.get(chain[-1].parent_id))
        return chain[::-1]

    def branch(self, node_id: str) -> str | None:
        """The root's child this node descends from (None for a root, which is in no branch)."""
        chain = self.path(node_id)
        return chain[1].id if len(chain) > 1 else None

    def evaluated(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.status == "evaluated"]

    # -- writing ----------------------------------------------------------------------------
    def add(self, pipeline: Pipeline, *, parent_id: str | None = None, operator: str = "expand",
            iteration: int = 0, rationale: str | None = None, modification: dict[str, Any] | None = None,
            sources: tuple[str, ...] = ()) -> Node:
        """Add a node (and its edges). Raises ValueError if the pipeline is already in the graph."""
        if operator not in OPERATORS:
            raise ValueError(f"operator {operator!r} is not one of {OPERATORS}")
        if (parent_id is None) != (operator == "root"):
            raise ValueError("only a root node has no parent, and a root node has operator 'root'")
        if self.find(pipeline.hash):
            raise ValueError(f"pipeline {pipeline.hash[:12]} is already node {self.find(pipeline.hash).id}")
        for ref in (parent_id, *sources):
            if ref is not None:
                self.get(ref)
        node = Node(id=f"{self.run_id}.n{len(self.nodes):04d}", pipeline=pipeline, parent_id=parent_id,
                    operator=operator, iteration=iteration, rationale=rationale, sources=tuple(sources))
        runs = self.store.runs
        with self.store.transaction():
            runs.add_node(self.run_id, pipeline.to_dict(), pipeline.hash, parent_id=parent_id,
                          iteration=iteration, rationale=rationale, node_id=node.id)
            for src in (parent_id, *sources):
                if src is not None:
                    runs.add_edge(self.run_id, src, node.id, operator, modification or {}, rationale)
            self._emit(NodeAdded(node_id=node.id, parent_id=parent_id, operator=operator, iteration=iteration,
                                 pipeline=pipeline.to_dict(), rationale=rationale))
        self._index(node)
        return node

    def set_status(self, node_id: str, status: str, **fields: Any) -> Node:
        """Change status (and model_id / dataset_version_id / metrics) without touching statistics."""
        if status not in NODE_STATUSES:
            raise ValueError(f"node status {status!r} is not one of {NODE_STATUSES}")
        node = self.get(node_id)
        self.store.runs.update_node(node_id, status=status, **fields)
        node.status = status
        for key, value in fields.items():
            setattr(node, key, value)
        return node

    def mark_exhausted(self, node_id: str, reason: str) -> None:
        self.annotate(node_id, exhausted=True, exhausted_reason=reason)

    def annotate(self, node_id: str, **metrics: Any) -> None:
        """Merge search bookkeeping into a node's metrics."""
        node = self.get(node_id)
        merged = {**node.metrics, **metrics}
        self.store.runs.update_node(node_id, metrics=merged)
        node.metrics = merged

    def record_result(self, node_id: str, *, status: str, reward: float, score: float | None,
                      regressions: int | None, metrics: dict[str, Any]) -> Node:
        """Store a node's result and backpropagate (one visit, `reward`) to it and every ancestor."""
        if status not in ("evaluated", "failed"):
            raise ValueError(f"a result has status 'evaluated' or 'failed', not {status!r}")
        node = self.get(node_id)
        if node.status not in PENDING:
            raise ValueError(f"node {node_id} already has a result (status {node.status})")
        chain = self.path(node_id)
        merged = {**node.metrics, **metrics}
        with self.store.transaction():
            self.store.runs.update_node(node_id, status=status, score=score, regressions=regressions,
                                        metrics=merged)
            for member in chain:
                self.store.runs.update_node(member.id, visits=member.visits + 1,
                                            total_reward=member.total_reward + reward)
            self._emit(NodeEvaluated(node_id=node_id, score=score, regressions=regressions, metrics=merged,
                                     status=status))
        node.status, node.score, node.regressions, node.metrics = status, score, regressions, merged
        for member in chain:
            member.visits += 1
            member.total_reward += reward
        return node

    # -- internals --------------------------------------------------------------------------
    def _index(self, node: Node) -> None:
        self.nodes[node.id] = node
        self._by_hash[node.pipeline.hash] = node.id
        if node.parent_id is not None:
            self.nodes[node.parent_id].children.append(node.id)

    def _emit(self, event: EngineEvent) -> None:
        if self.bus is not None:
            self.bus.emit(event)
