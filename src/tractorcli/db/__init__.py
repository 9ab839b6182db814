"""The job database: connections, schema migrations, and the SQL they run.

Every SQL statement lives in `db/sql/` (migration files and named blocks of
`queries.sql`); Python code here only picks statements by name and passes
parameters.
"""
