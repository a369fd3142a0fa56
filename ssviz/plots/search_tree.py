"""Search-tree figures replayed from an extraction trace (format: docs/trace.md).

:func:`tree_nodes` reconstructs the tree as it stood after a given step (pure
data, testable); :func:`tree_figure` draws it top-down with a tidy layout:
leaves in lexicographic (depth-first) order, each parent centred over its
children, so edges never cross.

A character trace's node is a filler prefix: one character per level. A token
trace's node (a transformer's search, ``"unit": "token"``) is a token path after
the root, its tokens' texts joined by ``separator``: one token per level, labelled
with the token's text, and it spells the text after the root, which is how found
fillers and the secret's path are placed on it.
"""

from __future__ import annotations

import plotly.graph_objects as go

from ssviz.plots.tokens import plotly_text, visible

STATUS_STYLE = {  # status: (legend name, colour, symbol, size)
    "expanded": ("expanded earlier", "#5d6d7e", "circle", 9),
    "frontier": ("waiting in the frontier", "#aeb6bf", "circle-open", 8),
    "pruned": ("pruned by the beam", "#d5d8dc", "x", 7),
    "found": ("complete filler found", "#1e8449", "diamond", 13),
    "current": ("expanded at this step", "#e67e22", "circle", 15),
}


class _Units:
    """How node names split into units: characters (character traces) or tokens (token traces)."""

    def __init__(self, trace: dict):
        self.sep = trace.get("separator") if trace.get("unit") == "token" else None

    def parent(self, node: str) -> str | None:
        if not node:
            return None
        return node.rpartition(self.sep)[0] if self.sep else node[:-1]

    def depth(self, node: str) -> int:
        return (node.count(self.sep) + 1 if node else 0) if self.sep else len(node)

    def last(self, node: str) -> str:
        return node.rpartition(self.sep)[2] if self.sep else node[-1:]

    def key(self, node: str):
        return node.split(self.sep) if self.sep else node


def tree_nodes(trace: dict, step: int, secret: str | None = None) -> list[dict]:
    """The nodes known after ``step``: node, parent, depth, text (the last character or token), cost (bits),
    status, on_path, x.

    status: ``current`` (expanded in this step), ``expanded`` (earlier), ``found``
    (a complete filler reported so far), ``pruned`` (dropped by a beam) or
    ``frontier`` (generated, not expanded). ``on_path``: on the way to ``secret``
    (a prefix of it; in a token trace, one token path spelling the start of its text).
    """
    units = _Units(trace)
    steps = trace["steps"][:max(0, step) + 1]
    nodes: dict[str, dict] = {}
    found: list[str] = []

    def touch(node: str, cost: float | None, status: str) -> None:
        entry = nodes.setdefault(node, {"node": node, "cost": cost, "status": status})
        if cost is not None:
            entry["cost"] = cost
        rank = ("frontier", "pruned", "expanded", "found", "current")
        if rank.index(status) >= rank.index(entry["status"]):
            entry["status"] = status

    for i, s in enumerate(steps):
        last = i == len(steps) - 1
        for c in s.get("children", []):
            touch(c["node"], c["cost"], "frontier" if c.get("kept", True) else "pruned")
        for e in s.get("expanded", []):
            touch(e["node"], e["cost"], "current" if last else "expanded")
            if not last and nodes[e["node"]]["status"] == "current":
                nodes[e["node"]]["status"] = "expanded"
        for f in s.get("found", []):
            if units.sep:  # a bare filler: placed below on the node(s) spelling its text
                found.append(f["filler"])
            else:
                touch(f["filler"], f["log_perplexity"], "found")
    for node in list(nodes):  # ancestors dropped by trace caps still anchor the drawing
        parent = units.parent(node)
        while parent is not None and parent not in nodes:
            nodes[parent] = {"node": parent, "cost": None, "status": "expanded"}
            parent = units.parent(parent)
    nodes.setdefault("", {"node": "", "cost": trace.get("prefix_bits"), "status": "expanded"})
    path: set[str] = set()
    if units.sep:
        path = _token_marks(trace, nodes, units, found, secret)
    _layout(nodes, units)
    for n in nodes.values():
        n["depth"] = units.depth(n["node"])
        n["parent"] = units.parent(n["node"])
        n["text"] = units.last(n["node"])
        n["on_path"] = secret is not None and (n["node"] in path if units.sep else secret.startswith(n["node"]))
    return sorted(nodes.values(), key=lambda n: (n["depth"], n["x"]))


def _token_marks(trace: dict, nodes: dict[str, dict], units: _Units, found: list[str],
                 secret: str | None) -> set[str]:
    """Mark the nodes spelling each found filler's text ``found``; return the nodes of one token path to
    ``secret`` (the one reaching furthest into its text, the cheapest of equals)."""
    from ssviz.errors import SsvizError
    from ssviz.templates import Template
    try:
        template = Template(trace["template"])
    except (SsvizError, KeyError, TypeError):
        return set()
    spelled = {n: n.replace(units.sep, "") for n in nodes}
    root = _root_length(template, [n for n in nodes if n and units.depth(n) == 1])

    def rest(filler: str) -> str | None:
        try:
            return template.format(filler)[root:]
        except SsvizError:
            return None

    complete: dict[str, list[str]] = {}
    for n, text in spelled.items():
        complete.setdefault(text, []).append(n)
    for filler in found:
        for n in complete.get(rest(filler), []) if rest(filler) else []:
            if nodes[n]["status"] != "current":
                nodes[n]["status"] = "found"
    target = rest(secret) if secret is not None else None
    if target is None:
        return set()
    on = [n for n in nodes if target.startswith(spelled[n])]
    end = min(on, key=lambda n: (-len(spelled[n]), nodes[n]["cost"] if nodes[n]["cost"] is not None
                                 else float("inf"), n))
    path = set()
    while end is not None:
        path.add(end)
        end = units.parent(end)
    return path


def _root_length(template, first: list[str]) -> int:
    """Characters of the text the root (the tokens every filler shares) spells: the furthest position in the
    literal prefix where every first-level token fits the template (GPT-2 starts the slot at ``" 4"``)."""
    allowed = tuple(template.prefix) + template.positions
    for r in range(len(template.prefix), -1, -1):
        if all(r + len(t) <= len(allowed) and all(ch in allowed[r + i] for i, ch in enumerate(t)) for t in first):
            return r
    return len(template.prefix)


def _layout(nodes: dict[str, dict], units: _Units) -> None:
    children: dict[str, list[str]] = {}
    for node in nodes:
        if node:
            children.setdefault(units.parent(node), []).append(node)
    leaves = sorted((n for n in nodes if n not in children), key=units.key)
    for i, leaf in enumerate(leaves):
        nodes[leaf]["x"] = float(i)
    for node in sorted(children, key=units.depth, reverse=True):  # deepest parents first
        xs = [nodes[c]["x"] for c in children[node]]
        nodes[node]["x"] = (min(xs) + max(xs)) / 2


def tree_figure(trace: dict, step: int, secret: str | None = None, title: str | None = None,
                height: int = 520) -> go.Figure:
    """The tree after ``step``: edges, nodes by status, costs as labels on the expanded ones, and the
    path to ``secret`` drawn thick in red."""
    nodes = tree_nodes(trace, step, secret)
    tokens = trace.get("unit") == "token"
    pos = {n["node"]: (n["x"], -n["depth"]) for n in nodes}
    ex, ey = [], []
    for n in nodes:
        if n["parent"] is not None:
            (x0, y0), (x1, y1) = pos[n["parent"]], pos[n["node"]]
            ex += [x0, x1, None]
            ey += [y0, y1, None]
    fig = go.Figure(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color="#d0d3d4", width=1), hoverinfo="skip",
                               showlegend=False, name="edges"))
    path = sorted((n for n in nodes if n["on_path"]), key=lambda n: n["depth"])
    if len(path) > 1:
        fig.add_trace(go.Scatter(x=[n["x"] for n in path], y=[-n["depth"] for n in path], mode="lines",
                                 line=dict(color="#c0392b", width=5), name=f"path to {secret}", hoverinfo="skip"))
    for status, (name, color, symbol, size) in STATUS_STYLE.items():
        group = [n for n in nodes if n["status"] == status]
        if not group:
            continue
        labelled = status in ("current", "found") or len(group) <= 30
        fig.add_trace(go.Scatter(
            x=[n["x"] for n in group], y=[-n["depth"] for n in group], name=name,
            mode="markers+text" if labelled else "markers",
            text=[_label(n, tokens) for n in group] if labelled else None, textposition="top center",
            textfont=dict(size=12),
            customdata=[[plotly_text(shown_node(n["node"], trace)) or "(root)",
                          n["cost"] if n["cost"] is not None else float("nan")] for n in group],
            hovertemplate="%{customdata[0]}<br>cost %{customdata[1]:.2f} bits<extra>" + name + "</extra>",
            marker=dict(color=color, symbol=symbol, size=size,
                        line=dict(width=2, color="#c0392b") if status == "current" else dict(width=1))))
    on_path = [n for n in nodes if n["on_path"] and n["node"]]
    if on_path:
        fig.add_trace(go.Scatter(x=[n["x"] for n in on_path], y=[-n["depth"] for n in on_path], mode="markers",
                                 marker=dict(size=7, color="#c0392b"), name="on the secret's path",
                                 hoverinfo="skip", showlegend=False))
    depth = max((n["depth"] for n in nodes), default=0)
    fig.update_yaxes(tickvals=[-d for d in range(depth + 1)], ticktext=[str(d) for d in range(depth + 1)],
                     title_text="tokens chosen" if tokens else "characters chosen", range=[-depth - 0.6, 0.6])
    fig.update_xaxes(visible=False)
    fig.update_layout(title=title, height=height, margin=dict(t=50 if title else 20, b=10, l=40, r=10),
                      legend=dict(orientation="h", y=-0.02, yanchor="top"), plot_bgcolor="white",
                      font=dict(size=14))
    return fig


def _label(n: dict, tokens: bool = False) -> str:
    """The node's last character, or its last token's text with spaces drawn, and its cost."""
    text = plotly_text(visible(n["text"]) if tokens else n["text"]) if n["node"] else "root"
    return f"{text} {n['cost']:.1f}" if n["cost"] is not None else text


def shown_node(node: str, trace: dict) -> str:
    """A node's name for people (hover, tables): a token path as its tokens' texts (spaces drawn) between dots."""
    if trace.get("unit") != "token" or not node:
        return node
    return " · ".join(visible(t) for t in node.split(trace["separator"]))


def found_so_far(trace: dict, step: int) -> list[dict]:
    """Complete fillers reported up to ``step``, best first, without repeats."""
    best: dict[str, float] = {}
    for s in trace["steps"][:step + 1]:
        for f in s.get("found", []):
            best[f["filler"]] = min(best.get(f["filler"], float("inf")), f["log_perplexity"])
    return [{"filler": k, "log_perplexity": v} for k, v in sorted(best.items(), key=lambda kv: kv[1])]


def frontier(trace: dict, step: int, limit: int = 20) -> list[dict]:
    """The cheapest generated-but-not-expanded nodes after ``step`` (as far as the trace lists them)."""
    nodes = [n for n in tree_nodes(trace, step) if n["status"] == "frontier"]
    return [{"node": n["node"], "cost": n["cost"]} for n in sorted(nodes, key=lambda n: n["cost"])[:limit]]
