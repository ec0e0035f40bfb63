"""The Tenant operator: a `Tenant` custom resource reconciled into a tenant row, a database
role, quotas and rate limits. (Importable as courtside_operator: a package named
`operator` would shadow Python's standard library.)"""
