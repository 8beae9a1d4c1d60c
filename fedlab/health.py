"""A synthetic wearable-health dataset: the course's running story in numbers.

A health app learns from its users' heart rate, sleep and exercise without the
data leaving their phones. No real person's data is in this module: every
number is drawn from the small generative model below, so the workbook can be
shared freely and every learner sees the same data (given the same seed).

The model is built to show what makes federated data hard:

* **Unbalanced, heavy-tailed users.** About 10 % of users wore the watch for
  only 3-10 days; the rest have 20-120 days (log-normal, median ~45).
* **Non-IID users.** Each user has their own baseline (resting heart rate,
  heart-rate variability, sleep, steps, active minutes, age group), so one
  user's "normal" is another user's warning sign.
* **Personal response.** Whether a more-active-than-usual day helps or hurts
  the next night's sleep depends on the user; on average it helps the least
  active users most and hurts the most active ones (hard training days). A
  model fitted mostly to active users therefore serves inactive users worse,
  which is what the opt-out lessons measure.
* **A learnable but noisy target.** ``poor_sleep_next_night`` (base rate ~33 %)
  depends on today's features *relative to the user's baseline*, plus 5 %
  label noise.

The generative model
--------------------
Notation: ``u`` is a user, ``t`` a day, ``e``/``n`` independent standard
normal draws, ``sigmoid(z) = 1 / (1 + exp(-z))``.

Per user (the app never sees these directly; they are kept in
:class:`UserProfiles` as ground truth)::

    age_group  a_u in {0: 18-34, 1: 35-54, 2: 55+}   with probs 0.40, 0.35, 0.25
    fitness    f_u   = e_1 - 0.3 (a_u - 1)
    steps      S_u   = 7000 exp(0.45 f_u)                    typical steps/day
    group      g_u   = low if S_u < 5500, high if S_u >= 8500, else medium
    active     A_u   = 30 exp(0.6 f_u + 0.2 e_2)             typical active minutes/day
    rest. HR   R_u   = 64 - 3.5 f_u + 1.5 a_u + 4 e_3         beats/min
    HRV        V_u   = 48 exp(0.2 f_u - 0.2 (a_u - 1) + 0.25 e_4)   ms (RMSSD)
    sleep      H_u   = clip(7.2 - 0.15 (a_u - 1) + 0.5 e_5, 5, 9)   hours
    efficiency E_u   = clip(0.88 - 0.015 (a_u - 1) + 0.03 e_6, 0.70, 0.97)
    weekend    W_u   = 0.3 e_7                               log step change at weekends
    response   b_u   = m[g_u] + 0.3 e_8,  m = (-2.5, -0.5, +1.0) for (low, medium, high)
    tendency   c_u   = 0.7 e_9                               personal offset of the log-odds

Per day, with weekday ``w = (start_u + t) mod 7`` (0 = Monday) and
``weekend_t = [w >= 5]``, a hidden stress level follows an AR(1) process::

    s_0 = n_0,   s_t = 0.6 s_{t-1} + 0.8 n_t        (stationary variance 1)

and the measurements are::

    r_t                = exp(0.35 n_1 + W_u weekend_t - 0.1 s_t)     (activity ratio)
    steps_t            = clip(S_u r_t, 0, 40000)
    active_minutes_t   = clip(A_u r_t^1.2 exp(0.3 n_2), 0, 300)
    resting_hr_t       = R_u + 2.0 s_t + 1.5 n_3
    hrv_ms_t           = V_u exp(-0.15 s_t + 0.12 n_4)
    sleep_hours_t      = clip(H_u + 0.5 weekend_t - 0.3 s_t + 0.6 n_5, 3, 11)   (last night)
    sleep_efficiency_t = clip(E_u - 0.015 s_t + 0.025 n_6, 0.50, 0.99)       (last night)

The target for day ``t`` is whether the coming night is a poor one::

    z_t = -2.0 + c_u + 0.3 a_u + 0.35 weekend_t
          + 1.5 (resting_hr_t - R_u) / 2.5
          - 1.2 log(hrv_ms_t / V_u) / 0.19
          + b_u log((active_minutes_t + 5) / (A_u + 5)) / 0.45
          + 0.4 (H_u - sleep_hours_t)
          - 6 (sleep_efficiency_t - E_u)
    p_t = sigmoid(z_t)
    poor_sleep_next_night_t = Bernoulli(p_t), then flipped with probability 0.05

Every term compares today with the user's own baseline, which a model sees
only through the user's other days: that is why personalization helps. The
measurements are rounded as in the shipped CSV (heart rate and HRV to 0.1,
sleep hours to 0.01, efficiency to 0.001, steps and minutes to integers) before
they are returned; ``p_t`` uses the unrounded values.

Regenerate the shipped file with::

    python -m fedlab.health --out datasets/health.csv

This is a teaching model: its coefficients are plausible in sign and size, not
fitted to any clinical study, and nothing learned from it is health advice.
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedlab import seeding, validate

FEATURES: tuple[str, ...] = (
    "resting_hr",
    "hrv_ms",
    "sleep_hours",
    "sleep_efficiency",
    "steps",
    "active_minutes",
)
"""Names of the daily measurements, the columns of :attr:`HealthData.x`."""

UNITS: dict[str, str] = {
    "resting_hr": "beats per minute",
    "hrv_ms": "milliseconds (RMSSD, overnight)",
    "sleep_hours": "hours asleep last night",
    "sleep_efficiency": "fraction of time in bed asleep last night, 0..1",
    "steps": "steps per day",
    "active_minutes": "minutes of moderate or vigorous activity per day",
}

TARGET = "poor_sleep_next_night"
ACTIVITY_GROUPS: tuple[str, ...] = ("low", "medium", "high")
AGE_GROUPS: tuple[str, ...] = ("18-34", "35-54", "55+")

COLUMNS: tuple[str, ...] = ("user", "day", "weekday", "activity_group", "age_group", *FEATURES, TARGET)
"""The header of the CSV written by :func:`to_csv`, in order."""

# Decimal places of each feature in the CSV (and in the returned arrays).
_DECIMALS = (1, 1, 2, 3, 0, 0)

_MIN_DAYS_SHORT, _MAX_DAYS_SHORT = 3, 10
_MIN_DAYS, _MAX_DAYS = 20, 120
_SHORT_FRACTION = 0.10
_LABEL_NOISE = 0.05


@dataclass(frozen=True, eq=False)
class UserProfiles:
    """Hidden per-user ground truth, each array of shape ``[num_users]``.

    Attributes
    ----------
    num_days
        Days recorded for the user (int64).
    start_weekday
        Weekday of the user's first day, 0 = Monday (int64).
    age_group
        Index into :data:`AGE_GROUPS` (int64).
    activity_group
        Index into :data:`ACTIVITY_GROUPS`, from the typical steps (int64).
    steps, active_minutes, resting_hr, hrv_ms, sleep_hours, sleep_efficiency
        The user's typical values ``S_u, A_u, R_u, V_u, H_u, E_u`` (float64).
    weekend_steps
        ``W_u``: log change of the user's steps at weekends.
    activity_response
        ``b_u``: how a more active day changes the log-odds of a poor night.
    tendency
        ``c_u``: the user's personal offset of the log-odds.

    """

    num_days: np.ndarray
    start_weekday: np.ndarray
    age_group: np.ndarray
    activity_group: np.ndarray
    steps: np.ndarray
    active_minutes: np.ndarray
    resting_hr: np.ndarray
    hrv_ms: np.ndarray
    sleep_hours: np.ndarray
    sleep_efficiency: np.ndarray
    weekend_steps: np.ndarray
    activity_response: np.ndarray
    tendency: np.ndarray


@dataclass(frozen=True, eq=False)
class HealthData:
    """One generated dataset: ``n`` daily rows, grouped by user, in day order.

    Attributes
    ----------
    user
        User id of each row, ``[n]`` int64, ids ``0 .. num_users - 1``.
    day
        Day index within the user, ``[n]`` int64, starting at 0.
    weekday
        ``[n]`` int64, 0 = Monday ... 6 = Sunday.
    x
        Daily measurements, ``[n, len(FEATURES)]`` float64, columns as :data:`FEATURES`.
    y
        ``poor_sleep_next_night``, ``[n]`` int64 in {0, 1} (after label noise).
    prob
        The true probability ``p_t`` before noise, ``[n]`` float64 (for
        "best possible" reference numbers; a real app never has it).
    users
        The hidden per-user baselines, :class:`UserProfiles`.
    seed
        The int seed used, or ``None`` if a Generator was passed.

    """

    user: np.ndarray
    day: np.ndarray
    weekday: np.ndarray
    x: np.ndarray
    y: np.ndarray
    prob: np.ndarray
    users: UserProfiles
    seed: int | None

    @property
    def num_users(self) -> int:
        return int(self.users.num_days.shape[0])

    @property
    def activity_group(self) -> np.ndarray:
        """Activity group of each row, ``[n]`` int64 (index into :data:`ACTIVITY_GROUPS`)."""
        return self.users.activity_group[self.user]

    @property
    def age_group(self) -> np.ndarray:
        """Age group of each row, ``[n]`` int64 (index into :data:`AGE_GROUPS`)."""
        return self.users.age_group[self.user]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _user_profiles(num_users: int, gen: np.random.Generator) -> UserProfiles:
    n = num_users
    short = gen.random(n) < _SHORT_FRACTION
    short_days = gen.integers(_MIN_DAYS_SHORT, _MAX_DAYS_SHORT + 1, size=n)
    long_days = np.clip(np.round(45.0 * np.exp(0.5 * gen.standard_normal(n))), _MIN_DAYS, _MAX_DAYS)
    num_days = np.where(short, short_days, long_days).astype(np.int64)
    start_weekday = gen.integers(0, 7, size=n).astype(np.int64)

    u = gen.random(n)
    age = (u >= 0.40).astype(np.int64) + (u >= 0.75).astype(np.int64)
    e = gen.standard_normal((9, n))
    a = age - 1.0
    fitness = e[0] - 0.3 * a
    steps = 7000.0 * np.exp(0.45 * fitness)
    group = (steps >= 5500.0).astype(np.int64) + (steps >= 8500.0).astype(np.int64)
    response_mean = np.array([-2.5, -0.5, 1.0])[group]
    return UserProfiles(
        num_days=num_days,
        start_weekday=start_weekday,
        age_group=age,
        activity_group=group,
        steps=steps,
        active_minutes=30.0 * np.exp(0.6 * fitness + 0.2 * e[1]),
        resting_hr=64.0 - 3.5 * fitness + 1.5 * age + 4.0 * e[2],
        hrv_ms=48.0 * np.exp(0.2 * fitness - 0.2 * a + 0.25 * e[3]),
        sleep_hours=np.clip(7.2 - 0.15 * a + 0.5 * e[4], 5.0, 9.0),
        sleep_efficiency=np.clip(0.88 - 0.015 * a + 0.03 * e[5], 0.70, 0.97),
        weekend_steps=0.3 * e[6],
        activity_response=response_mean + 0.3 * e[7],
        tendency=0.7 * e[8],
    )


def generate(*, num_users: int = 1200, seed: int | np.random.Generator = 2024) -> HealthData:
    """Generate the synthetic wearable-health dataset (see the module docstring).

    Parameters
    ----------
    num_users
        Number of users (positive int). The shipped file uses 1200.
    seed
        An int seed or a ``numpy.random.Generator``. The same int gives the
        same data, byte for byte, on every run.

    Returns
    -------
    HealthData
        ``n = users.num_days.sum()`` rows, grouped by user and ordered by day.

    Raises
    ------
    ValueError
        If ``num_users`` is not a positive int or ``seed`` is not a seed.

    """
    num_users = validate.positive_int("num_users", num_users)
    gen = seeding.as_generator(seed, name="seed")
    users = _user_profiles(num_users, gen)

    # Draw a full [num_users, max_days] grid, then keep each user's first num_days.
    t_max = _MAX_DAYS
    keep = np.arange(t_max)[None, :] < users.num_days[:, None]
    noise = gen.standard_normal((7, num_users, t_max))
    stress = np.empty((num_users, t_max))
    stress[:, 0] = noise[0, :, 0]
    for t in range(1, t_max):
        stress[:, t] = 0.6 * stress[:, t - 1] + 0.8 * noise[0, :, t]
    weekday = (users.start_weekday[:, None] + np.arange(t_max)[None, :]) % 7
    weekend = (weekday >= 5).astype(np.float64)

    def col(v: np.ndarray) -> np.ndarray:  # per-user [num_users] -> [num_users, 1]
        return v[:, None]

    steps_ratio = np.exp(0.35 * noise[1] + col(users.weekend_steps) * weekend - 0.1 * stress)
    steps = np.clip(col(users.steps) * steps_ratio, 0.0, 40000.0)
    active = np.clip(col(users.active_minutes) * steps_ratio**1.2 * np.exp(0.3 * noise[2]), 0.0, 300.0)
    resting_hr = col(users.resting_hr) + 2.0 * stress + 1.5 * noise[3]
    hrv = col(users.hrv_ms) * np.exp(-0.15 * stress + 0.12 * noise[4])
    sleep = np.clip(col(users.sleep_hours) + 0.5 * weekend - 0.3 * stress + 0.6 * noise[5], 3.0, 11.0)
    efficiency = np.clip(col(users.sleep_efficiency) - 0.015 * stress + 0.025 * noise[6], 0.50, 0.99)

    z = (
        -2.0
        + col(users.tendency)
        + 0.3 * col(users.age_group)
        + 0.35 * weekend
        + 1.5 * (resting_hr - col(users.resting_hr)) / 2.5
        - 1.2 * np.log(hrv / col(users.hrv_ms)) / 0.19
        + col(users.activity_response) * np.log((active + 5.0) / (col(users.active_minutes) + 5.0)) / 0.45
        + 0.4 * (col(users.sleep_hours) - sleep)
        - 6.0 * (efficiency - col(users.sleep_efficiency))
    )
    prob = _sigmoid(z)
    label = gen.random((num_users, t_max)) < prob
    flip = gen.random((num_users, t_max)) < _LABEL_NOISE
    label = label != flip

    x = np.stack([resting_hr, hrv, sleep, efficiency, steps, active], axis=-1)[keep]
    x = np.stack([np.round(x[:, j], d) for j, d in enumerate(_DECIMALS)], axis=1)
    user, day = np.nonzero(keep)
    return HealthData(
        user=user.astype(np.int64),
        day=day.astype(np.int64),
        weekday=weekday[keep].astype(np.int64),
        x=x,
        y=label[keep].astype(np.int64),
        prob=prob[keep],
        users=users,
        seed=int(seed) if not isinstance(seed, np.random.Generator) else None,
    )


def to_csv(data: HealthData) -> str:
    r"""The dataset as CSV text: a header line :data:`COLUMNS`, then one line per row.

    Formatting is fixed (``\\n`` line ends, fixed decimals per column), so the
    same data always gives the same bytes and a checksum can pin the file.
    """
    fmt = "%d,%d,%d,%d,%d," + ",".join("%d" if d == 0 else f"%.{d}f" for d in _DECIMALS) + ",%d\n"
    cols = [data.user, data.day, data.weekday, data.activity_group, data.age_group]
    ints = np.stack(cols + [data.y], axis=1).tolist()
    xs = data.x.tolist()
    out = io.StringIO()
    out.write(",".join(COLUMNS) + "\n")
    for i, row in zip(ints, xs, strict=True):
        out.write(fmt % (*i[:5], *row, i[5]))
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m fedlab.health --out datasets/health.csv``."""
    parser = argparse.ArgumentParser(prog="python -m fedlab.health", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="CSV file to write")
    parser.add_argument("--num-users", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    data = generate(num_users=args.num_users, seed=args.seed)
    args.out.write_bytes(to_csv(data).encode("ascii"))
    print(f"wrote {args.out}: {data.num_users} users, {len(data.y)} rows, base rate {data.y.mean():.3f}")


if __name__ == "__main__":
    main()
