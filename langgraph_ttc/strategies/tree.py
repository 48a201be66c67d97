"""Pure tree logic shared by the tree searches (MCTS, REBASE): no graphs, no backends.

A tree is a list of `TreeNode` dicts whose index is the node id (node 0 is the root, the empty
solution); each names its parent and children. Plain data, so the whole tree is checkpointed
with the graph state. A node's statistics: `visits` (values backed up through it) and
`value` (their sum; the mean value is value / visits).

- `select_leaves`: UCT from the root, several leaves at once, with virtual loss so they differ.
- `backup`: add new values to a node and every ancestor.
- `allocate`: split an expansion budget by softmax(score / temperature), summing exactly to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from typing_extensions import TypedDict  # pydantic needs it on Python 3.11


class TreeNode(TypedDict):
    """One node of a search tree: a partial (or, once `finished`, a whole) solution."""

    id: int
    parent: int | None
    depth: int  # steps from the root
    children: list[int]
    score: float  # the verifier's score of this node (0 for the unscored root)
    visits: int  # values backed up through this node
    value: float  # their sum
    finished: bool


def root() -> TreeNode:
    return TreeNode(
        id=0, parent=None, depth=0, children=[], score=0.0, visits=0, value=0.0, finished=False
    )


def copied(tree: Sequence[TreeNode]) -> list[TreeNode]:
    """A copy to update: a node's update must never reach the state it was read from."""
    return [{**node, "children": list(node["children"])} for node in tree]


def add_child(tree: list[TreeNode], parent: int, *, finished: bool) -> TreeNode:
    """Append a new, unvisited child of `parent` (id: the next index) and return it."""
    node = TreeNode(
        id=len(tree),
        parent=parent,
        depth=tree[parent]["depth"] + 1,
        children=[],
        score=0.0,
        visits=0,
        value=0.0,
        finished=finished,
    )
    tree.append(node)
    tree[parent]["children"].append(node["id"])
    return node


def mean_value(node: TreeNode) -> float:
    return node["value"] / node["visits"] if node["visits"] else 0.0


def path_to(tree: Sequence[TreeNode], node_id: int) -> list[int]:
    """The ids from the root down to `node_id`."""
    path: list[int] = []
    current: int | None = node_id
    while current is not None:
        path.append(current)
        current = tree[current]["parent"]
    return path[::-1]


def backup(tree: list[TreeNode], node_id: int, value: float) -> list[int]:
    """Add one visit of `value` to `node_id` and every ancestor; returns the updated ids
    (leaf first). Each node's mean value is then the mean over the values below it."""
    updated = path_to(tree, node_id)[::-1]
    for i in updated:
        tree[i]["visits"] += 1
        tree[i]["value"] += value
    return updated


def open_nodes(tree: Sequence[TreeNode], max_depth: int, taken: set[int]) -> set[int]:
    """Nodes with an expandable leaf below (or at) them: an unfinished leaf shallower than
    `max_depth` and not already `taken`. Children always have larger ids than their parent,
    so one pass from the last node up settles every node."""
    result: set[int] = set()
    for node in reversed(tree):
        if node["children"]:
            if any(c in result for c in node["children"]):
                result.add(node["id"])
        elif not node["finished"] and node["depth"] < max_depth and node["id"] not in taken:
            result.add(node["id"])
    return result


def uct(child: TreeNode, parent_visits: int, exploration: float, virtual: int = 0) -> float:
    """Q + c * sqrt(ln N_parent / N_child), with `virtual` losses counted as visits of value
    0; an unvisited child scores infinity (it is explored first)."""
    visits = child["visits"] + virtual
    if visits == 0:
        return math.inf
    explore = math.sqrt(math.log(max(1, parent_visits)) / visits)
    return child["value"] / visits + exploration * explore


def select_leaves(
    tree: Sequence[TreeNode], count: int, exploration: float, max_depth: int
) -> list[int]:
    """Up to `count` distinct leaves to expand, each by UCT from the root. Every selection
    adds a virtual loss (a visit of value 0) along its path, so the next one leans elsewhere;
    a selected leaf is not selected again. Ties go to the older child."""
    virtual = [0] * len(tree)
    taken: set[int] = set()
    leaves: list[int] = []
    for _ in range(count):
        reachable = open_nodes(tree, max_depth, taken)
        if 0 not in reachable:
            break
        node = tree[0]
        while node["children"]:
            parent_visits = node["visits"] + virtual[node["id"]]
            options = [tree[c] for c in node["children"] if c in reachable]
            node = max(options, key=lambda c: uct(c, parent_visits, exploration, virtual[c["id"]]))
        for i in path_to(tree, node["id"]):
            virtual[i] += 1
        taken.add(node["id"])
        leaves.append(node["id"])
    return leaves


def spread(total: int, parts: int) -> list[int]:
    """`total` split over `parts` as evenly as possible (the first ones get the extra)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def softmax(scores: Sequence[float], temperature: float) -> list[float]:
    """exp(s / T) / sum exp(s / T), computed stably."""
    if not scores:
        return []
    scaled = [s / temperature for s in scores]
    top = max(scaled)
    exps = [math.exp(s - top) for s in scaled]
    total = sum(exps)
    return [e / total for e in exps]


def allocate(scores: Sequence[float], budget: int, temperature: float) -> list[int]:
    """REBASE: `budget` children split over nodes in proportion to softmax(score / T), rounded
    by largest remainder so the counts sum to exactly `budget` (ties: the better score, then
    the earlier node)."""
    if not scores or budget <= 0:
        return [0] * len(scores)
    quotas = [w * budget for w in softmax(scores, temperature)]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(
        range(len(scores)), key=lambda i: (-(quotas[i] - counts[i]), -scores[i], i)
    )
    for i in by_remainder[: budget - sum(counts)]:
        counts[i] += 1
    return counts
