"""Known drug effects, direction and size (issue 2's list; numbers from shared/data).

Each test simulates the typical man of a phenotype; percentages are changes from his day-0 baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hpgsim.population.phenotypes import Patient, typical_patient
from hpgsim.simulation import simulate


def _run(regimens: list[dict], duration: str = "12 week", phenotype: str = "healthy", step: float = 24.0) -> pd.DataFrame:
    return simulate({"duration": duration, "regimens": regimens}, phenotype=phenotype, output_step_h=step).observables


def _castrate() -> Patient:
    """The typical healthy man without Leydig function (T and E2 from extragonadal precursors only)."""
    man = typical_patient("healthy")
    return Patient("castrate", {**man.parameters, "leydig_capacity": 0.0})


def _ratio(df: pd.DataFrame, q: str, day: float) -> float:
    return float(df[q].loc[day] / df[q].iloc[0])


@pytest.fixture(scope="module")
def baseline() -> pd.Series:
    return _run([], "1 day").iloc[0]


def test_healthy_baseline_labs_are_in_the_published_ranges(baseline):
    b = baseline
    assert 400 <= b.total_testosterone <= 750  # Travison 2017: median 531 ng/dL
    assert 1.5 <= 100 * (b.free_testosterone / 1000) / (b.total_testosterone / 100) <= 2.5  # free T % of total
    assert 15 <= b.estradiol <= 40
    assert 2 <= b.lh <= 8 and 2 <= b.fsh <= 8
    assert 20 <= b.shbg <= 60
    assert 100 <= b.inhibin_b <= 250
    ratio = b.intratesticular_testosterone / (b.total_testosterone / 28.84)
    assert 40 <= ratio <= 150  # Coviello 2005: ITT ~83x serum
    assert 40 <= b.sperm_concentration <= 100
    assert b.te_ratio > 10


def test_a_man_without_leydig_function_keeps_adrenal_t_and_e2():
    """Orchiectomy leaves T ~15 ng/dL (Oefelein 2000); goserelin leaves E2 ~5 pg/mL, which letrozole lowers
    further (PMC5792144): extragonadal steroid production that LH does not drive and aromatase inhibitors do."""
    castrate = _castrate()
    df = simulate({"duration": "4 week"}, patient=castrate).observables
    assert 10 <= df.total_testosterone.iloc[0] <= 25
    assert 3 <= df.estradiol.iloc[0] <= 8
    # No T or E2 feedback: LH far above the typical man's 4.8 IU/L, but within the pituitary's range. Without
    # gonadal steroids men raise LH about threefold within days (ketoconazole: x2.6 at 150 h, x3 at 3-4 days;
    # physiology.yaml feedback_experiments) and several-fold after castration; the model's steady state is
    # x9 (LH) and x15 (FSH). Before the fifth session of 2026-11-27 it was x26 and x33: the baseline sat deep in the E2 curve.
    assert 3 * 4.8 < df.lh.iloc[0] < 15 * 4.8
    assert df.fsh.iloc[0] < 25 * 4.5
    let = simulate(
        {"duration": "4 week", "regimens": [{"drug": "letrozole", "dose": "2.5 mg", "every": "1 day"}]}, patient=castrate
    ).observables
    assert let.estradiol.loc[28] < 0.5 * df.estradiol.iloc[0]


def test_without_gonadal_steroids_lh_rises_over_weeks_not_hours():
    """Ketoconazole (T at castrate levels, E2 x0.38) raises LH x2.6 at 150 h (Hayes 2001) and x3 by days 3-4
    (Pitteloud 2008; physiology.yaml feedback_experiments), while men without Leydig function settle near x9.
    With the slow part of the GnRH drive (gnrh_slow_share) the typical man's LH is x3.6 at 3.5 days and keeps
    rising for weeks (x7.2 at 14 days, x8.3 at 42; x3.7 / x7.2 / x8.4 with the seventh session's calibration);
    without it the model gave x7.9 at 3.5 days."""
    man = typical_patient("healthy")
    blocked = Patient("blocked", {**man.parameters, "leydig_capacity": 0.02 * man.parameters["leydig_capacity"]})
    lh = simulate({"duration": "42 day"}, patient=blocked, start_from=man, output_step_h=12.0).observables.lh
    early, late = lh.loc[3.5] / lh.iloc[0], lh.loc[42] / lh.iloc[0]
    assert 2.0 <= early <= 5.0
    assert late > 1.5 * early  # still rising after the first days
    assert lh.loc[14] > lh.loc[3.5]


def test_anastrozole_lowers_e2_and_raises_t_lh_fsh():
    df = _run([{"drug": "anastrozole", "dose": "1 mg", "every": "1 day"}])
    # E2 down 20-60%: anastrozole 1 mg daily lowers E2 by 24% (BurnettBowie2009), 35% (Leder2004) and
    # ~50% in boys (Mauras2000); the calibrated typical man falls 40% (docs/validation.md; the
    # drug's caveat says so, test_drug_caveats_quote_the_model_as_it_is)
    assert 0.40 <= _ratio(df, "estradiol", 84) <= 0.80
    assert 1.25 <= _ratio(df, "total_testosterone", 84) <= 2.0  # T up 25-100%
    assert _ratio(df, "lh", 84) > 1.1 and _ratio(df, "fsh", 84) > 1.05


def test_drug_caveats_quote_the_model_as_it_is():
    # The caveats flagged on every anastrozole or clomiphene result quote the typical man's 12-week folds;
    # when a model change moves them, the caveat (and docs/validation.md) must move too.
    import re

    from hpgsim.model.spec import load_model

    drugs = load_model().drugs
    ana = _run([{"drug": "anastrozole", "dose": "1 mg", "every": "1 day"}])
    m = re.search(r"E2 falls (\d+)% and LH rises x([\d.]+) on 1 mg", drugs["anastrozole"].caveat)
    assert round(100 * (1 - _ratio(ana, "estradiol", 84))) == int(m.group(1))
    assert round(_ratio(ana, "lh", 84), 2) == float(m.group(2))
    clo = _run([{"drug": "clomiphene_citrate", "dose": "25 mg", "every": "1 day"}])
    lh, fsh = map(float, re.search(r"LH rises x([\d.]+) and FSH x([\d.]+)", drugs["clomiphene_citrate"].caveat).groups())
    assert round(_ratio(clo, "lh", 84), 2) == lh and round(_ratio(clo, "fsh", 84), 2) == fsh


def test_clomiphene_blocks_estrogen_receptors_through_the_dosing_interval():
    """Plasma enclomiphene swings about 4-fold within a day (half-life 10 h), but its hydroxylated metabolites
    act for 13-37 h (drugs.yaml), so the receptor blockade, and FSH with it, should barely move within a day.
    With the blockade on plasma enclomiphene (until 2026-11-28, fifth session) FSH went from x1.33 before the
    dose to x1.76 eight hours after it; with the effect compartment x1.51-1.55."""
    d = _run([{"drug": "clomiphene_citrate", "dose": "25 mg", "every": "1 day"}], "85 day", step=1.0)
    day = d.loc[83.0:84.0]
    conc = day.enclomiphene_concentration
    assert conc.max() > 3 * conc.min()  # the plasma level does swing
    fsh = day.fsh / d.fsh.iloc[0]
    assert fsh.max() < 1.1 * fsh.min()
    assert fsh.min() > 1.4  # FSH rises (published about x2 on 25 mg/day; the drug's caveat)


def test_testosterone_add_back_with_aromatase_blocked_halves_lh_and_fsh():
    """T suppresses LH and FSH without aromatisation: T infused at 15 mg/day for 4 days under testolactone,
    E2 unchanged, LH 14.5 -> 8.0 and FSH 9.9 -> 5.8 IU/L (x0.55, x0.59; physiology.yaml feedback_experiments,
    testosterone_infusion_with_aromatase_blocked). Here: letrozole for 14 days, with testosterone gel 112 mg/day
    on the last 4: 15 mg absorbed at the calibrated gel_absorbed_fraction 0.134 (150 mg at the 0.1 used until
    2026-11-28).

    E2: the data's E2 stays flat (x1.01) while T triples; the model's letrozole leaves 17% of aromatisation
    (its calibrated effective maximum, docs/validation.md), so E2 follows T: x1.15 with T x1.21 before the slow
    GnRH component (seventh session of 2026-11-27), x1.26 with T x1.31 since (the drive, and with it the
    man's own T, falls more slowly in the 4 days of add-back). The bound was 1.2 and is now 1.3: a known
    weakness, not a fit."""
    let = [{"drug": "letrozole", "dose": "2.5 mg", "every": "1 day"}]
    alone = _run(let, "14 day").loc[14.0]
    t_on = _run([*let, {"drug": "testosterone_gel", "dose": "112 mg", "every": "1 day", "start": "10 day"}], "14 day")
    with_t = t_on.loc[14.0]
    assert 0.3 <= with_t.lh / alone.lh <= 0.8
    assert 0.3 <= with_t.fsh / alone.fsh <= 0.85
    assert 0.85 <= with_t.estradiol / alone.estradiol <= 1.3  # published x1.01 with aromatase blocked; see docstring


def _patch(ug_per_day: float, start: str = "0 day") -> dict:
    """The E2 patch as eight doses a day: near-constant delivery, as a worn patch gives."""
    return {"drug": "estradiol_patch", "dose": f"{ug_per_day / 8} ug", "every": "3 h", "start": start}


def test_estradiol_add_back_under_letrozole_lowers_t_about_five_fold():
    """Stepped E2-patch add-back under letrozole 2.5 mg/day in young men: E2 12.6 -> 68.6 pg/mL lowered T
    955 -> 179 ng/dL, 5.3-fold (physiology.yaml feedback_experiments, estradiol_clamp_under_letrozole). The
    model with two Hill-3 E2 terms gave 21-fold and castrate T (docs/model.md); the ceiling on the
    hypothalamic E2 action and the pituitary's local aromatisation are what bring it near the data."""
    let = [{"drug": "letrozole", "dose": "2.5 mg", "every": "1 day"}]
    none = _run(let, "28 day").loc[28.0]
    high = _run([*let, _patch(100)], "28 day").loc[28.0]
    assert 45 <= high.estradiol <= 80 and none.estradiol < 15
    assert 3.0 <= none.total_testosterone / high.total_testosterone <= 10.0
    assert high.total_testosterone > 80  # suppressed, not castrate (179 ng/dL published)


# A GnRH-deficient man on a GnRH pump: the pituitary under fixed GnRH (Pitteloud 2008's design).
PUMP = [{"drug": "gonadorelin", "dose": "5 ug", "every": "90 min", "route": "sc"}]
GNRH_DEFICIENT = "hypogonadotropic_hypogonadism"


@pytest.fixture(scope="module")
def on_pump() -> pd.Series:
    """The typical GnRH-deficient man after 70 days on the pump alone."""
    return _run(PUMP, "70 day", GNRH_DEFICIENT).loc[70.0]


def test_estradiol_add_back_in_gnrh_deficient_men_on_fixed_gnrh_acts_modestly_on_the_pituitary(on_pump):
    """GnRH-deficient men on fixed exogenous GnRH isolate the pituitary: an E2 patch of 37.5 ug/day lowered
    LH pulse amplitude 14.7 -> 12 IU/L, by about a fifth (Pitteloud 2008, physiology.yaml feedback_experiments).
    Here the mean LH of the typical GnRH-deficient man on a pump, after a week of the patch."""
    with_e2 = _run([*PUMP, _patch(37.5, "63 day")], "70 day", GNRH_DEFICIENT).loc[70.0]
    assert with_e2.estradiol > on_pump.estradiol + 5
    assert 0.6 <= with_e2.lh / on_pump.lh <= 0.95


def test_testosterone_acts_on_the_pituitary_through_aromatisation(on_pump):
    """In GnRH-deficient men on fixed GnRH (the pituitary isolated), T add-back lowers LH only when aromatase
    is free (Pitteloud 2008, physiology.yaml feedback_experiments): at the model's pituitary T acts only as
    estradiol, from serum and (since 2026-11-27) made locally from T, and letrozole blocks both."""
    let = [{"drug": "letrozole", "dose": "2.5 mg", "every": "1 day", "start": "56 day"}]
    gel = [{"drug": "testosterone_gel", "dose": "100 mg", "every": "1 day", "start": "63 day"}]
    free = _run(PUMP + gel, "70 day", GNRH_DEFICIENT).loc[70.0].lh / on_pump.lh
    blocked = (
        _run(PUMP + let + gel, "70 day", GNRH_DEFICIENT).loc[70.0].lh / _run(PUMP + let, "70 day", GNRH_DEFICIENT).loc[70.0].lh
    )
    assert free < 0.7
    assert blocked > free + 0.2


def test_estradiol_patch_adds_its_dose_to_serum_e2():
    """Mass balance of the E2 patch (feedback experiments): in a man without Leydig function (no T-derived E2
    to fall), 100 ug/day at the E2 clearance of 66.7 L/h adds 100e6 pg / 1.6e6 mL = 62.5 pg/mL on average over
    a day (the skin reservoir makes the daily input swing between 0.78 and 1.26 of its mean)."""
    castrate = _castrate()
    df = simulate(
        {"duration": "28 day", "regimens": [{"drug": "estradiol_patch", "dose": "100 ug", "every": "1 day"}]},
        patient=castrate,
        output_step_h=1.0,
    ).observables
    last_day = df.loc[(df.index >= 27.0) & (df.index < 28.0), "estradiol"]
    added = float(last_day.mean() - df.estradiol.iloc[0])
    assert 55 <= added <= 70


def test_letrozole_suppresses_e2_more_than_anastrozole():
    ana = _run([{"drug": "anastrozole", "dose": "1 mg", "every": "1 day"}], "4 week")
    let = _run([{"drug": "letrozole", "dose": "2.5 mg", "every": "1 day"}], "4 week")
    assert _ratio(let, "estradiol", 28) < _ratio(ana, "estradiol", 28) - 0.05


def test_at_similar_e2_falls_letrozole_raises_lh_about_twice_as_much_as_anastrozole():
    # E2 -62%: letrozole 2.5 mg LH x4.2 at 28 days (TSjoen2005), anastrozole 10 mg LH x2.0 at 7 days (Hayes2000):
    # anastrozole reaches hypothalamic aromatase at a share of its peripheral inhibition (docs/model.md)
    ana = _run([{"drug": "anastrozole", "dose": "10 mg", "every": "1 day"}], "4 week")
    let = _run([{"drug": "letrozole", "dose": "2.5 mg", "every": "1 day"}], "4 week")
    assert abs(_ratio(ana, "estradiol", 28) - _ratio(let, "estradiol", 28)) < 0.15
    assert _ratio(let, "lh", 28) > 1.6 * _ratio(ana, "lh", 28)
    assert 1.4 < _ratio(ana, "lh", 28) < 2.6


def test_clomiphene_raises_t_lh_fsh_and_e2():
    df = _run([{"drug": "clomiphene_citrate", "dose": "25 mg", "every": "1 day"}])
    # hypogonadal men more than double T on 25 mg (Shabsigh2005, Helo2017); a eugonadal man, whose Leydig
    # cells already run nearer saturation, rises less
    assert 1.4 <= _ratio(df, "total_testosterone", 84) <= 2.7
    assert 1.4 <= _ratio(df, "lh", 84) <= 3.0  # a SERM raises LH about 2.4-fold (Willis1977, tamoxifen)
    assert 1.2 <= _ratio(df, "fsh", 84) <= 2.2
    assert _ratio(df, "estradiol", 84) > 1.2
    # zuclomiphene accumulates: higher at 12 weeks than at 2 weeks, and far above enclomiphene
    assert df.zuclomiphene_concentration.loc[84] > 1.5 * df.zuclomiphene_concentration.loc[14]
    assert df.zuclomiphene_concentration.loc[84] > 10 * df.enclomiphene_concentration.loc[84]


def test_tamoxifen_raises_all_four():
    df = _run([{"drug": "tamoxifen", "dose": "20 mg", "every": "1 day"}])
    for q in ["total_testosterone", "estradiol", "lh", "fsh"]:
        assert _ratio(df, q, 84) > 1.2, q


@pytest.fixture(scope="module")
def te_course() -> pd.DataFrame:
    # 26 weeks of TE 200 mg weekly, then 44 weeks off
    return _run([{"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week", "stop": "26 week"}], "70 week")


def test_testosterone_enanthate_suppresses_gonadotropins_and_itt(te_course):
    df = te_course
    on = df.loc[21:182]
    assert (on.lh / df.lh.iloc[0]).max() < 0.10  # LH below 10% from week 3 (also at troughs)
    # FSH: 3% of baseline at week 3 (Coviello2005), below the assay limit at troughs (Wallace1993); the
    # model's troughs are 7-8% (10-12% before the fifth session of 2026-11-27, when its inhibin B collapsed on TE)
    fsh = on.fsh / df.fsh.iloc[0]
    assert fsh.max() < 0.10
    # inhibin B is only partly gonadotropin dependent: 75% of baseline after gonadotropin and spermatogenic
    # suppression by T plus a progestin (Matthiesson 2003); the model keeps about half (it fell to 5% before)
    inh = on.inhibin_b / df.inhibin_b.iloc[0]
    assert inh.min() > 0.3
    assert inh.max() < 0.9
    assert (on.intratesticular_testosterone / df.intratesticular_testosterone.iloc[0]).max() < 0.10  # ITT down > 90%
    assert on.total_testosterone.min() > df.total_testosterone.iloc[0]  # while serum T stays high


def test_sperm_suppression_half_time_and_recovery_half_plateau(te_course):
    s = te_course.sperm_concentration
    s0 = s.iloc[0]
    half_day = float(s.index[np.argmax(s.to_numpy() < 0.5 * s0)])
    assert 0.6 * 38.5 <= half_day <= 1.4 * 38.5  # suppression half-time ~5.5 weeks (HumReprod2005)
    assert s.loc[182] < 1.0
    rec = s.loc[182:]
    plateau = rec.iloc[-1]
    assert plateau > 0.8 * s0
    half_rec = float(rec.index[np.argmax(rec.to_numpy() > 0.5 * plateau)]) - 182
    # HumReprod2005's fitted recovery: half of the plateau at 10.5 weeks, 20 M/mL at a median 13.6 weeks
    assert 0.75 * 73.5 <= half_rec <= 1.1 * 95.2


def _after_te(months: int) -> tuple[pd.DataFrame, pd.Series]:
    """The typical man from the stop of `months` of TE 200 mg weekly (day 0 = the stop), and his baseline."""
    weeks = months * 52 // 12
    df = _run(
        [{"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week", "stop": f"{weeks} week"}], f"{weeks + 60} week"
    )
    after = df.loc[7 * weeks + 1 :]
    after.index = after.index - 7 * weeks
    return after, df.iloc[0]


def test_recovery_after_te_slows_with_its_length_and_gonadotropins_rebound():
    """Liu et al. 2006 (Lancet 367:1412, integrated analysis of 1549 men): the longer the treatment, the slower
    the spermatogenic recovery. In the model the epithelium regresses while support is absent (k_regression), so
    a longer course leaves more to regrow. Wallace1993: men recovering from TE-induced azoospermia had LH and FSH
    above their own baseline. The numbers: python tools/trt_recovery.py."""
    days = {}
    for months in (6, 24):
        after, b = _after_te(months)
        s = after.sperm_concentration
        days[months] = (
            float(s.index[np.argmax(s.to_numpy() >= 20)]),
            float(s.index[np.argmax(s.to_numpy() >= 0.5 * b.sperm_concentration)]),
        )
        first_month = after.loc[:30]
        assert first_month.lh.max() > 1.2 * b.lh and first_month.fsh.max() > 1.2 * b.fsh  # rebound above baseline
        assert after.total_testosterone.loc[:60].min() > 0.4 * b.total_testosterone  # a dip while exogenous T washes out
    assert 60 <= days[6][0] <= 120  # WHO1990: a median 3.7 months to 20 M/mL (after about 16 months of TE)
    assert days[24][0] > 1.2 * days[6][0] and days[24][1] > 1.2 * days[6][1]


def test_sperm_output_starts_falling_within_weeks_then_steeply(te_course):
    # Sperm concentration starts to fall about 15 days into TE 200 mg weekly (Hum Reprod 2005 dei174), before
    # germ cells lost at the androgen-dependent point (a month upstream of the ejaculate) can be missed: mature
    # spermatids are retained and phagocytosed when support fails (spermiation failure). Output is 17% lower at
    # month 1 (Handelsman_Timplants), half at 5.5 weeks and < 1 M/mL at 13 weeks (HumReprod2005). Without
    # spermiation failure the model's output was 99% of baseline at day 21.
    c = te_course.total_sperm_count
    assert c.loc[7] > 0.93 * c.iloc[0]  # sperm already in the epididymis still come out
    assert c.loc[21] < 0.95 * c.iloc[0]
    assert 0.6 * c.iloc[0] < c.loc[30] < 0.9 * c.iloc[0]
    assert c.loc[56] < 0.25 * c.iloc[0]
    assert te_course.sperm_concentration.loc[91] < 1.0


def test_low_dose_hcg_keeps_itt_near_baseline_on_te():
    """Coviello 2005: on TE 200 mg weekly ITT falls 94%; hCG 500 IU every other day keeps it at +26%. The ITT
    preserved by hCG keeps spermatogenesis going, which shows in semen weeks later (the chain lags ~6 weeks)."""
    te_only = [{"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week"}]
    te = _run(te_only, "12 week")
    with_hcg = _run([*te_only, {"drug": "hcg", "dose": "500 IU", "every": "2 day"}], "12 week")
    assert _ratio(te, "intratesticular_testosterone", 21) < 0.15
    assert 0.7 <= _ratio(with_hcg, "intratesticular_testosterone", 21) <= 1.6
    assert _ratio(with_hcg, "sperm_concentration", 84) > 2 * _ratio(te, "sperm_concentration", 84)
    assert _ratio(with_hcg, "sperm_concentration", 84) > 0.5


def test_gonadorelin_pump_restores_t_then_sperm_in_gnrh_deficiency():
    df = _run(PUMP, "78 week", GNRH_DEFICIENT)
    assert df.total_testosterone.iloc[0] < 150 and df.lh.iloc[0] < 1.5  # untreated: low T, low LH
    assert df.sperm_concentration.iloc[0] < 0.01  # never-stimulated testes: azoospermic
    normal_day = float(df.index[np.argmax(df.total_testosterone.to_numpy() > 300)])
    assert normal_day <= 56  # T normal within 8 weeks (the model gets there in about one: see docs/model.md)
    # sperm lag T by months: the epithelium must mature first (first sperm at a median 5 months,
    # 5 M/mL at 14 months in treated GnRH-deficient men, ConcordCohort_GonadotropinTherapy)
    assert df.sperm_concentration.loc[56] < 0.01
    assert df.sperm_concentration.loc[182] < 2.0
    assert df.sperm_concentration.loc[546] > 2.0  # 2 M/mL at a median 12 months (ConcordCohort)


def test_gnrh_boluses_prime_the_pituitary_of_a_gnrh_deficient_man():
    # RepetitiveGnRH_IHH: 50 ug IV every 4 h; the LH response grows from 8.3 to 14.6 IU/L over a week
    # and basal FSH rises from 2.8 to 13.6 IU/L. An unstimulated pituitary stores little LH (first
    # response well below a healthy man's ~22 IU/L), and repeated pulses restore its synthesis.
    df = _run(
        [{"drug": "gonadorelin", "dose": "50 ug", "every": "4 h", "stop": "7.01 day", "route": "iv"}],
        "7.1 day",
        "hypogonadotropic_hypogonadism",
        step=0.25,
    )
    first = df.lh.loc[0:0.2].max()
    last = df.lh.loc[7.0:7.1].max()
    assert 4 <= first <= 15
    assert last > 1.4 * first
    assert df.fsh.loc[6.9:7.0].iloc[-1] > 2 * df.fsh.iloc[0]  # before dose 43


def test_continuous_gnrh_flares_then_desensitises():
    df = _run([{"drug": "gonadorelin", "dose": "20 ug", "every": "10 min", "route": "sc"}], "4 week", step=3.0)
    lh = df.lh / df.lh.iloc[0]
    assert lh.loc[0:3].max() > 2.0  # flare
    assert lh.loc[21:28].max() < 0.7  # then suppression
    assert _ratio(df, "total_testosterone", 28) < 0.7


def test_gonadorelin_twice_weekly_gives_hours_of_lh_and_little_weekly_effect():
    df = _run([{"drug": "gonadorelin", "dose": "100 ug", "every": "3.5 day", "route": "sc"}], "2 week", step=0.25)
    lh = df.lh / df.lh.iloc[0]
    assert lh.max() > 3
    hours_above_2x = (lh > 2).sum() * 0.25 / 4  # per injection
    assert 1 <= hours_above_2x <= 12
    assert lh.mean() < 1.5  # small effect on the weekly mean


def test_gnrh_stimulation_test_lh_peak():
    df = _run([{"drug": "gonadorelin", "dose": "100 ug", "at": ["0 h"], "route": "iv"}], "4 h", step=1 / 60)
    lh = df.lh / df.lh.iloc[0]
    peak_min = float(lh.idxmax()) * 24 * 60
    assert 15 <= peak_min <= 45
    assert 3 <= lh.max() <= 10


def test_letrozole_enlarges_the_lh_response_to_a_gnrh_bolus():
    """TSjoen2005 (abstract; not in the study file's rows): after 28 days of letrozole the peak LH response to
    an IV 2.5 ug GnRH bolus rose 152% in young and 52% in elderly men: estrogen restrains the gonadotroph
    itself. Model (typical man): peak x2.4."""

    def peak(regimens: list[dict], day: float) -> float:
        bolus = {"drug": "gonadorelin", "dose": "2.5 ug", "at": [f"{day} day"], "route": "iv"}
        df = _run([*regimens, bolus], f"{day + 0.25} day", step=1 / 12)
        return float(df.lh.loc[day : day + 0.2].max())

    ratio = peak([{"drug": "letrozole", "dose": "2.5 mg", "every": "1 day"}], 28.0) / peak([], 1.0)
    assert 1.5 <= ratio <= 3.5


def test_estradiol_over_suppression_is_flagged():
    res = simulate({"duration": "4 week", "regimens": [{"drug": "letrozole", "dose": "2.5 mg", "every": "1 day"}]})
    low = res.observables.estradiol.loc[1:].min() < 10
    assert low == any("estradiol falls below 10 pg/mL" in f for f in res.flags)


def test_te_leaves_a_minority_of_men_oligozoospermic():
    """Between-man variability of suppression: on TE 200 mg weekly about two thirds of men reach
    azoospermia within 6 months (WHO1990 0.65, Wallace1993 0.61, Handelsman 0.66), not all of them."""
    from hpgsim.population.phenotypes import sample_patients
    from hpgsim.simulation import simulate_population

    men = sample_patients("healthy", 60, seed=11)
    prot = {"duration": "26 week", "regimens": [{"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week"}]}
    res = simulate_population(prot, men, processes=2, rtol=1e-4)
    azoo = np.mean([float(r.observables["sperm_concentration"].min()) < 0.01 for r in res])
    assert 0.4 <= azoo <= 0.85


@pytest.mark.slow
def test_gonadotropins_give_sperm_to_most_but_not_all_gnrh_deficient_men():
    """hCG 1500 IU + FSH 150 IU three times weekly for 16 months: 78% of cycles reach sperm > 0, 56% > 2 M/mL
    (ConcordCohort); meta-analysis of 41 studies: 78% > 0, 15% > 20 M/mL (Muir et al.). A population without
    non-responders reached sperm in every man."""
    from hpgsim.population.phenotypes import sample_patients
    from hpgsim.simulation import simulate_population

    men = sample_patients("hypogonadotropic_hypogonadism", 60, seed=11)
    protocol = {
        "duration": "487 day",
        "regimens": [
            {"drug": "hcg", "dose": "1500 IU", "every": "2.3333 day"},
            {"drug": "recombinant_fsh", "dose": "150 IU", "every": "2.3333 day"},
        ],
    }
    res = simulate_population(protocol, men, processes=2, output_step_h=24 * 7)
    peak = np.array([r.observables.sperm_concentration.max() for r in res])
    assert 0.6 <= np.mean(peak > 0.01) <= 0.92
    assert 0.35 <= np.mean(peak > 2) <= 0.8
    assert np.mean(peak > 20) <= 0.4
