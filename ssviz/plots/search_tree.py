"""Search-tree figures replayed from an extraction trace (format: docs/trace.md).

:func:`tree_nodes` reconstructs the tree as it stood after a given step (pure
data, testable); :func:`tree_figure` draws it top-down with a tidy layout:
leaves in lexicographic (depth-first) order, each parent centred over its
children, so edges never cross.
"""

from __future__ import annotations

import plotly.graph_objects as go

STATUS_STYLE = {  # status: (legend name, colour, symbol, size)
    "expanded": ("expanded earlier", "#5d6d7e", "circle", 9),
    "frontier": ("waiting in the frontier", "#aeb6bf", "circle-open", 8),
    "pruned": ("pruned by the beam", "#d5d8dc", "x", 7),
    "found": ("complete filler found", "#1e8449", "diamond", 13),
    "current": ("expanded at this step", "#e67e22", "circle", 15),
}


def tree_nodes(trace: dict, step: int, secret: str | None = None) -> list[dict]:
    """The nodes known after ``step``: node, parent, depth, cost (bits), status, on_path, x.

    status: ``current`` (expanded in this step), ``expanded`` (earlier), ``found``
    (a complete filler reported so far), ``pruned`` (dropped by a beam) or
    ``frontier`` (generated, not expanded). ``on_path``: a prefix of ``secret``.
    """
    steps = trace["steps"][:max(0, step) + 1]
    nodes: dict[str, dict] = {}

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
            touch(f["filler"], f["log_perplexity"], "found")
    for node in list(nodes):  # ancestors dropped by trace caps still anchor the drawing
        for k in range(len(node)):
            nodes.setdefault(node[:k], {"node": node[:k], "cost": None, "status": "expanded"})
    nodes.setdefault("", {"node": "", "cost": trace.get("prefix_bits"), "status": "expanded"})
    _layout(nodes)
    for n in nodes.values():
        n["depth"] = len(n["node"])
        n["parent"] = n["node"][:-1] if n["node"] else None
        n["on_path"] = secret is not None and secret.startswith(n["node"])
    return sorted(nodes.values(), key=lambda n: (n["depth"], n["x"]))


def _layout(nodes: dict[str, dict]) -> None:
    children: dict[str, list[str]] = {}
    for node in nodes:
        if node:
            children.setdefault(node[:-1], []).append(node)
    leaves = sorted(n for n in nodes if n not in children)
    for i, leaf in enumerate(leaves):
        nodes[leaf]["x"] = float(i)
    for node in sorted(children, key=len, reverse=True):  # deepest parents first
        xs = [nodes[c]["x"] for c in children[node]]
        nodes[node]["x"] = (min(xs) + max(xs)) / 2


def tree_figure(trace: dict, step: int, secret: str | None = None, title: str | None = None,
                height: int = 520) -> go.Figure:
    """The tree after ``step``: edges, nodes by status, costs as labels on the expanded ones, and the
    path to ``secret`` drawn thick in red."""
    nodes = tree_nodes(trace, step, secret)
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
            text=[_label(n) for n in group] if labelled else None, textposition="top center",
            textfont=dict(size=12),
            customdata=[[n["node"] or "(root)", n["cost"] if n["cost"] is not None else float("nan")]
                        for n in group],
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
                     title_text="characters chosen", range=[-depth - 0.6, 0.6])
    fig.update_xaxes(visible=False)
    fig.update_layout(title=title, height=height, margin=dict(t=50 if title else 20, b=10, l=40, r=10),
                      legend=dict(orientation="h", y=-0.02, yanchor="top"), plot_bgcolor="white",
                      font=dict(size=14))
    return fig


def _label(n: dict) -> str:
    text = n["node"][-1:] or "root"
    return f"{text} {n['cost']:.1f}" if n["cost"] is not None else text


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
