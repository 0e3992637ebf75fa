from tests.helpers import bearer, login, register


def test_register_then_sign_in_and_read_profile(client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    me = client.get("/api/v1/me", headers=bearer(session["token"]))
    assert me.status_code == 200
    assert me.json["email"] == person.email
    assert me.json["phone"] == person.phone
    assert me.json["full_name"] == person.full_name

    again = login(client, person.phone, person.password)
    assert again.status_code == 200
    assert again.json["token"] != session["token"]
