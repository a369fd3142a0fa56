"""The one-run epsilon lower bound (Steinke, Nasr, Jagielski, NeurIPS 2023), made sound for chosen guess counts.

Setting: ``m`` canaries, each included independently with probability 1/2; one model is trained;
the auditor guesses "in" for the ``k_plus`` highest membership scores and "out" for the ``k_minus``
lowest, abstaining on the rest, so it makes at most ``r = k_plus + k_minus`` guesses and ``v`` of
them are right. The paper's main theorem (with its delta term): if training is (eps, delta)-DP then

    P[v correct or more] <= P[Binomial(r, q) >= v] + 2 m delta max_{1<=i<=v} P[v-i <= Binomial(r, q) < v] / i

with ``q = e^eps / (1 + e^eps)``, the accuracy of eps-randomized response. That right-hand side is
:func:`p_value`. An observed ``v`` with p-value below ``alpha = 1 - confidence`` rules out
(eps, delta)-DP; the lower bound is the largest eps ruled out.

Soundness, which the paper's experiments leave to the reader:

* **Chosen counts.** Trying several ``(k_plus, k_minus)`` and keeping the best is a multiple test.
  Every candidate is tested at ``alpha / C`` (``C`` candidates, a union bound), so the largest of
  the ``C`` bounds is still wrong with probability at most ``alpha``. The candidates must not be
  chosen from this run's scores: :func:`default_guesses` depends on ``m`` only.
* **Ties.** Canaries whose score ties across a guess boundary are abstained on, not broken by
  position (a file sorted by membership would otherwise leak the labels into the guesses). The
  p-value still uses the planned ``r``: the theorem only needs "at most r guesses".
* **A p-value that is not monotone in eps.** The delta term can fall as eps grows. A mechanism
  that is (eps, delta)-DP is (eps', delta)-DP for every eps' > eps, so ``min over eps' >= eps`` of
  the p-value is valid and monotone; its crossing is the *largest* eps whose p-value is below
  alpha, which is what :func:`epsilon_for_counts` returns (exactly without delta; with delta a
  grid, then bisection inside the last bracket, always returning a point whose p-value is below
  alpha).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special, stats

from ssviz.audit.metrics import AuditError, membership_arrays

MIN_CANARIES = 10
DESIGN_P_LIMIT = 1e-6  # refuse inclusion counts this implausible under independent fair coins
_GRID_POINTS = 49
_BISECTIONS = 30
_FDP_MAX_EPS = 200.0   # beyond this the Gaussian curve is numerically a perfect test
_FDP_TOLERANCE = 1e-6  # of the f-DP bisection, in eps

# Pre-registered guess counts as fractions of m: "in"-only guesses at the top of the ranking (a
# memorized canary scores high; an unmemorized member looks like a non-member, so the bottom of
# the ranking is mixed) and two-sided guesses for mechanisms that leak both ways.
_IN_ONLY = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
_TWO_SIDED = ((0.05, 0.05), (0.1, 0.1), (0.2, 0.2), (0.3, 0.3), (0.4, 0.4), (0.5, 0.5),
              (0.1, 0.02), (0.2, 0.05), (0.3, 0.1), (0.5, 0.2))


@dataclass(frozen=True)
class EpsilonBound:
    """The audited lower bound and the guess that gave it (``float(bound)`` is the epsilon)."""

    epsilon: float
    k_plus: int
    k_minus: int
    correct: int
    canaries: int
    candidates: int
    confidence: float
    delta: float
    method: str = "steinke"  # or "fdp": which test gave the bound (see the module's docstring)

    def __float__(self) -> float:
        return self.epsilon

    def to_dict(self) -> dict:
        return asdict(self)


def _number(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise AuditError(f"{name} must be a number (got {type(value).__name__})")
    return float(value)


def check_level(confidence, delta) -> tuple[float, float]:
    """``(confidence, delta)`` as floats, or :class:`AuditError`: 0 < confidence < 1 and 0 <= delta < 1."""
    confidence, delta = _number("confidence", confidence), _number("delta", delta)
    if not 0.0 < confidence < 1.0:  # also refuses NaN
        raise AuditError(f"confidence must be strictly between 0 and 1 (got {confidence!r})")
    if not 0.0 <= delta < 1.0:
        raise AuditError(f"delta must be at least 0 and below 1 (got {delta!r})")
    return confidence, delta


def group_privacy(epsilon: float, delta: float, k: int) -> tuple[float, float]:
    """(epsilon, delta) for a group of ``k`` records: a canary inserted ``k`` times is such a group.

    The audit bounds the privacy of one *canary*; a DP guarantee per line covers a canary of ``k``
    lines only as ``(k eps, k e^((k-1) eps) delta)``, the standard group-privacy conversion.
    """
    if k < 1:
        raise AuditError(f"a group has at least one record (got {k})")
    return k * epsilon, min(1.0, k * math.exp(min((k - 1) * epsilon, 700.0)) * delta)


def p_value(m: int, r: int, v: int, eps, delta: float) -> np.ndarray:
    """The theorem's bound on P[at least v of r guesses right] under (eps, delta)-DP; vectorized over eps."""
    eps = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    if not 0 <= v <= r <= m:
        raise AuditError(f"need 0 <= correct ({v}) <= guesses ({r}) <= canaries ({m})")
    if v == 0:
        return np.ones_like(eps)
    q = special.expit(eps)
    beta = stats.binom.sf(v - 1, r, q)
    if delta > 0:
        k = np.arange(v - 1, -1, -1)  # v-1, v-2, ..., 0: the window [v-i, v) grows downward
        logpmf = (special.gammaln(r + 1) - special.gammaln(k + 1) - special.gammaln(r - k + 1)
                  + k * special.log_expit(eps)[:, None] + (r - k) * special.log_expit(-eps)[:, None])
        window = np.cumsum(np.exp(logpmf), axis=1)  # P[v-i <= Bin < v] for i = 1..v
        beta = beta + 2.0 * m * delta * np.max(window / np.arange(1, v + 1), axis=1)
    return np.minimum(beta, 1.0)


def epsilon_for_counts(m: int, r: int, v: int, *, delta: float, alpha: float) -> float:
    """Largest eps whose p-value for ``v`` of ``r`` right is below ``alpha`` (0 if none): a valid level-alpha bound.

    Without delta the p-value is a binomial tail, so the answer is the logit of the Clopper-Pearson
    lower limit ``q*`` (``P[Binomial(r, q*) >= v] = alpha``). The delta term only adds to the
    p-value, so with delta the answer lies in ``[0, logit(q*)]``: a grid there, then bisection in
    the last bracket whose left end is below alpha.
    """
    if v == 0 or v <= r / 2:
        return 0.0  # no better than a coin: no eps >= 0 is ruled out
    pure = float(special.logit(special.betaincinv(v, r - v + 1, alpha)))
    if not pure > 0.0:
        return 0.0
    if delta == 0.0:
        return pure
    grid = np.linspace(0.0, pure, _GRID_POINTS)
    below = np.flatnonzero(p_value(m, r, v, grid, delta) < alpha)
    if below.size == 0:
        return 0.0
    j = int(below[-1])
    lo = float(grid[j])
    hi = float(grid[j + 1]) if j + 1 < len(grid) else pure
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        if p_value(m, r, v, mid, delta)[0] < alpha:
            lo = mid
        else:
            hi = mid
    return lo


def gaussian_mu(eps: float, delta: float) -> float:
    """The mu of the Gaussian mechanism (sensitivity 1, noise 1/mu) that is exactly (eps, delta)-DP.

    Balle and Wang's analytic curve: delta(eps) = Phi(mu/2 - eps/mu) - e^eps Phi(-mu/2 - eps/mu),
    increasing in mu, solved for mu by bracketing and root finding. ``delta = 0`` only holds for
    mu = 0 (no Gaussian mechanism is pure DP).
    """
    if eps < 0 or not 0 <= delta < 1:
        raise AuditError(f"need eps >= 0 and 0 <= delta < 1 (got {eps!r}, {delta!r})")
    if delta == 0.0:
        return 0.0

    def gap(mu: float) -> float:
        a = special.ndtr(mu / 2 - eps / mu)
        b = math.exp(min(eps, 700.0)) * special.ndtr(-mu / 2 - eps / mu) if eps < 700 else 0.0
        return a - b - delta

    hi = 1.0
    while gap(hi) < 0:
        hi *= 2
        if hi > 1e6:
            return math.inf
    return float(optimize.brentq(gap, 1e-12, hi, xtol=1e-12, rtol=1e-12))


def _fdp_ruled_out(m: int, r: int, v: int, eps: float, delta: float, alpha: float) -> bool:
    """Whether ``v`` right of ``r`` guesses among ``m`` canaries refutes the Gaussian curve of (eps, delta).

    The recursion of Mahloujifar, Melis and Chaudhuri's capped audit: start from the mass the
    level allows on the observed counts (``alpha v / m`` right, ``alpha (r - v) / m`` wrong), then
    walk down the number of right guesses, each step raising the wrong-guess mass to what the
    trade-off curve forces (``f^-1(x) = Phi(Phi^-1(x) - mu)``) and the right-guess mass in
    proportion; if the masses the curve forces exceed the ``r / m`` the guesses have, no
    mu-GDP training could have produced so many right guesses at this level.
    """
    mu = gaussian_mu(eps, delta)
    right = alpha * v / m
    wrong = alpha * (r - v) / m
    for i in range(v - 1, -1, -1):
        forced = max(wrong, float(special.ndtr(special.ndtri(right) - mu))) if mu < math.inf else wrong
        if forced == wrong:
            break  # nothing moves any more
        right = min(right + i / (r - i) * (forced - wrong), 1.0)
        wrong = forced
    return right + wrong > r / m


def fdp_epsilon_for_counts(m: int, r: int, v: int, *, delta: float, alpha: float) -> float:
    """Largest eps whose Gaussian trade-off curve at ``delta`` is refuted at level ``alpha`` by ``v`` of ``r`` right.

    Mahloujifar, Melis and Chaudhuri, *Auditing f-Differential Privacy in One Run* (2024), with the
    Gaussian curve; the same arguments as :func:`epsilon_for_counts`. The refutation is monotone in
    eps (a larger eps is a larger mu, a weaker curve), so the answer is found by doubling an upper
    end and bisecting. With ``delta = 0`` no Gaussian curve applies and the answer is 0.
    """
    if not 0 <= v <= r <= m:
        raise AuditError(f"need 0 <= correct ({v}) <= guesses ({r}) <= canaries ({m})")
    if v == 0 or v <= r / 2 or delta <= 0.0:
        return 0.0
    if not _fdp_ruled_out(m, r, v, 0.0, delta, alpha):
        return 0.0
    lo, hi = 0.0, 1.0
    while _fdp_ruled_out(m, r, v, hi, delta, alpha):
        lo, hi = hi, hi * 2
        if hi > _FDP_MAX_EPS:
            return lo
    while hi - lo > _FDP_TOLERANCE:
        mid = (lo + hi) / 2
        if _fdp_ruled_out(m, r, v, mid, delta, alpha):
            lo = mid
        else:
            hi = mid
    return lo


def default_guesses(m: int) -> list[tuple[int, int]]:
    """The pre-registered ``(k_plus, k_minus)`` candidates for ``m`` canaries: fixed fractions, no peeking."""
    pairs = [(f, 0.0) for f in _IN_ONLY] + list(_TWO_SIDED)
    out: list[tuple[int, int]] = []
    for fp, fm in pairs:
        kp, km = max(1, round(fp * m)), round(fm * m) if fm else 0
        if fm and km == 0:
            km = 1
        if kp + km <= m and (kp, km) not in out:
            out.append((kp, km))
    return out


def _check_design(inc: np.ndarray) -> None:
    m, n_in = len(inc), int(inc.sum())
    if m < MIN_CANARIES:
        raise AuditError(f"the epsilon bound needs at least {MIN_CANARIES} canaries (got {m})")
    if n_in in (0, m):
        raise AuditError(f"all {m} canaries are {'included' if n_in else 'excluded'}: the one-run bound needs each "
                         "canary included independently with probability 1/2")
    tail = 2 * stats.binom.cdf(min(n_in, m - n_in), m, 0.5)
    if tail < DESIGN_P_LIMIT:
        raise AuditError(f"{n_in} of {m} canaries included is implausible for independent fair coins "
                         f"(p = {tail:.1e}): the one-run bound holds only for inclusion probability 1/2")


def correct_counts(scores: np.ndarray, included: np.ndarray, guesses) -> np.ndarray:
    """Right guesses for each ``(k_plus, k_minus)``, abstaining on ties that straddle a boundary.

    "In" goes to canaries with at most ``k_plus`` scores >= theirs, "out" to those with at most
    ``k_minus`` scores <= theirs; the two sets never overlap when ``k_plus + k_minus <= m``.
    """
    s = np.sort(scores)
    at_or_above = len(s) - np.searchsorted(s, scores, side="left")
    at_or_below = np.searchsorted(s, scores, side="right")
    g = np.asarray(guesses, dtype=np.int64).reshape(-1, 2)
    right_in = np.searchsorted(np.sort(at_or_above[included]), g[:, 0], side="right")
    right_out = np.searchsorted(np.sort(at_or_below[~included]), g[:, 1], side="right")
    return right_in + right_out


def _guess_pairs(guesses) -> list[tuple[int, int]]:
    try:
        pairs = [(a, b) for a, b in guesses]
        if not all(float(x) == int(x) for pair in pairs for x in pair):
            raise ValueError
        return [(int(a), int(b)) for a, b in pairs]
    except (TypeError, ValueError):
        raise AuditError("guesses must be a list of (k_plus, k_minus) pairs of whole numbers") from None


METHODS = {"steinke": epsilon_for_counts, "fdp": fdp_epsilon_for_counts}


def epsilon_lower_bound(scores, included, *, delta: float, confidence: float = 0.95,
                        guesses=None, method: str = "steinke") -> EpsilonBound:
    """Audited epsilon: with probability >= ``confidence`` training was not (eps, delta)-DP for any eps below it.

    ``scores``: membership score per canary (higher = more likely a member); ``included``: whether
    it was inserted, each independently with probability 1/2. ``guesses``: the ``(k_plus, k_minus)``
    candidates, fixed before looking at the scores (default :func:`default_guesses`); the level is
    split over them (union bound), and the best is reported. ``method``: ``"steinke"`` (the
    (eps, delta) theorem) or ``"fdp"`` (the Gaussian trade-off curve, :func:`fdp_epsilon_for_counts`),
    both over the same guesses. Degenerate inputs (fewer than :data:`MIN_CANARIES` canaries, all in
    or all out, NaN scores) raise :class:`AuditError`.
    """
    if method not in METHODS:
        raise AuditError(f"unknown bound {method!r} (choose from {', '.join(METHODS)})")
    confidence, delta = check_level(confidence, delta)
    s, inc = membership_arrays(scores, included, need_both=False)
    _check_design(inc)
    m = len(s)
    cands = default_guesses(m) if guesses is None else _guess_pairs(guesses)
    if not cands:
        raise AuditError("no guess counts to try")
    for kp, km in cands:
        if kp < 0 or km < 0 or kp + km > m:
            raise AuditError(f"guess counts ({kp}, {km}) must be non-negative and sum to at most {m}")
    alpha = (1.0 - confidence) / len(cands)
    correct = correct_counts(s, inc, cands)
    bound_for = METHODS[method]
    best = EpsilonBound(0.0, 0, 0, 0, m, len(cands), float(confidence), float(delta), method)
    for (kp, km), v in zip(cands, correct):
        eps = bound_for(m, kp + km, int(v), delta=delta, alpha=alpha)
        if eps > best.epsilon:
            best = EpsilonBound(eps, kp, km, int(v), m, len(cands), float(confidence), float(delta), method)
    return best
