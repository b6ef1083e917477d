"""Field value coercion, change origins and the Einstein predictions of the org simulator."""

from __future__ import annotations

import pytest

from simulator.errors import SalesforceError
from simulator.schema import OBJECTS
from simulator.values import coerce

USER = "0058d0000000001AAA"


def test_coercion_errors() -> None:
    lead = OBJECTS["Lead"]
    assert coerce(lead, lead.fields["AnnualRevenue"], "12.5") == 12.5
    assert coerce(lead, lead.fields["NumberOfEmployees"], "12") == 12
    with pytest.raises(SalesforceError) as wrong:
        coerce(lead, lead.fields["NumberOfEmployees"], "12.5")
    assert wrong.value.error_code == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    assert wrong.value.message == "Number Of Employees: value not of required type: 12.5"
    with pytest.raises(SalesforceError) as long:
        coerce(lead, lead.fields["LastName"], "x" * 81)
    assert long.value.error_code == "STRING_TOO_LONG"
    assert (
        coerce(OBJECTS["Opportunity"], OBJECTS["Opportunity"].fields["CloseDate"], "2026-01-31")
        == "2026-01-31"
    )


def test_change_origin_names_the_call_options_client() -> None:
    from simulator.http.common import Caller, client_of

    assert client_of("client=sfe-pipeline") == "sfe-pipeline"
    assert client_of("defaultNamespace=x, client=etl-job") == "etl-job"
    assert client_of(None) is None
    assert (
        Caller(USER, "62.0", "sfe-pipeline").origin
        == "com/salesforce/api/rest/62.0;client=sfe-pipeline"
    )
    assert Caller(USER, "61.0", None).origin == "com/salesforce/api/rest/61.0"


def test_einstein_prediction_adds_up() -> None:
    from simulator.einstein import predict

    rows = [
        {"Title": "VP Sales", "Industry": "Technology", "LeadSource": "Web", "Email": "a@b.co",
         "NumberOfEmployees": 1200, "AnnualRevenue": 9e6},
        {"Title": "Analyst", "LastName": "Quiet"},
    ]  # fmt: skip
    answer = predict({"settings": {"maxMiddleValues": 2, "maxPrescriptions": 1}}, rows)
    for result in answer["predictions"]:
        prediction = result["prediction"]
        parts = (
            prediction["baseLine"]
            + sum(m["value"] for m in prediction["middleValues"])
            + prediction["other"]
        )
        assert abs(parts - prediction["total"]) < 1e-6
        assert len(prediction["middleValues"]) <= 2 and len(result["prescriptions"]) <= 1
    strong, weak = (r["prediction"]["total"] for r in answer["predictions"])
    assert strong > weak
