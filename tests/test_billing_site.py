"""The site file's billing and energy sections: optional, typed, and checked against the rest of the site."""

from __future__ import annotations

import pytest
from metering_data import with_billing
from test_site_validation import problems_of

from infra.site import site_warnings
from infra.site.load import validate_data


def test_riga_without_billing_still_validates(riga):
    assert "billing" not in riga and "energy" not in riga
    assert problems_of(riga) == []


def test_riga_with_billing_validates(riga):
    assert problems_of(with_billing(riga)) == []


@pytest.mark.parametrize("mutate, path, fragment", [
    (lambda d: d["billing"].update(currency="eur"), "billing.currency", "ISO 4217"),
    (lambda d: d["billing"].update(currency="EUR\nX"), "billing.currency", "U+000A"),
    (lambda d: d["billing"]["tariffs"].update(gpu_hour={"H200:8": 1.0}), "billing.tariffs.gpu_hour", "GRES type"),
    (lambda d: d["billing"]["tariffs"].update(cpu_hour=-1), "billing.tariffs.cpu_hour", "greater than or equal"),
    (lambda d: d["billing"]["tariffs"].update(gpu_hour_eur=1), "billing.tariffs.gpu_hour_eur", "unknown key"),
    (lambda d: d["energy"]["pue"][0].update(period="2026-13"), "energy.pue[0].period", "a month"),
    (lambda d: d["energy"].update(supply="../supply.csv"), "energy.supply", "no '..'"),
    (lambda d: d["energy"].update(supply="absent.csv"), "energy.supply", "no file at"),
    (lambda d: d["energy"].update(node="rapl"), "energy.node", "ipmi"),
    (lambda d: d["tenants"][1]["billing"]["prepaid"].pop("currency"), "tenants[1].billing.prepaid.currency", "required"),
    (lambda d: d.pop("billing"), "tenants[0].billing", "top-level billing section"),
    (lambda d: d["billing"]["classes"].append({"name": "academic", "price_factor": 0.2}), "billing.classes[2].name", "twice"),
    (lambda d: d["billing"]["tariffs"]["storage_tb_month"].update(scratch=1.0), "billing.tariffs.storage_tb_month.scratch", "unknown storage"),
])
def test_a_billing_mistake_is_named(riga, mutate, path, fragment):
    data = with_billing(riga)
    mutate(data)
    problems = problems_of(data)
    assert any(p.startswith(path) and fragment in p for p in problems), problems


def test_an_untariffed_gpu_model_is_a_warning(riga):
    data = with_billing(riga)
    data["billing"]["tariffs"]["gpu_hour"] = {}
    assert problems_of(data) == []
    found = [p for p in site_warnings(validate_data(data)) if p.path == "billing.tariffs.gpu_hour"]
    assert found and "H200" in found[0].message


def test_an_unknown_key_in_tenant_billing_lists_class_as_written(riga):
    data = with_billing(riga)
    data["tenants"][0]["billing"]["klass"] = "academic"
    assert problems_of(data) == ["tenants[0].billing.klass: unknown key 'klass'; valid keys here: class, prepaid"]
