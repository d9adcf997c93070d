"""GET /healthz."""
from tests.conftest import make_test_app


def test_healthz_reports_ok_with_the_database_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_healthz_is_503_when_the_database_is_down():
    # Nothing listens on port 1: the connection is refused at once.
    down = make_test_app("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    response = down.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"] != "ok"


def test_pages_are_503_not_500_when_the_database_is_down():
    down = make_test_app("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    client = down.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = "1:some-session-token"
        session["_fresh"] = True
    response = client.get("/admin")
    assert response.status_code == 503
    assert "Traceback" not in response.get_data(as_text=True)
