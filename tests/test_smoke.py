async def test_register_then_get_own_tenant(client):
    from tests.factories import register_tenant
    admin = await register_tenant(client)
    r = await client.get(f"/tenants/{admin.tenant_id}", headers=admin.headers)
    assert r.status_code == 200, r.text
