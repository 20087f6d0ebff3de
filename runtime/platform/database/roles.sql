-- PostgreSQL roles for Vault's database secrets engine (dynamic credentials), run once by
-- `arbfleet secrets apply --database-admin-dsn-file` with the admin DSN of the writer's
-- database. Idempotent. Migrations then run as the group (runtime.persistence.migrate's
-- owner_role = "arbfleet_writer"), so the group owns the tables and their partitions.
--
--   arbfleet_writer  NOLOGIN group: owns the engine's tables, holds every privilege the writer
--                    needs. Each dynamic user is a member and acts as it (ALTER ROLE ... SET
--                    role), so no table is ever owned by a user Vault will drop.
--   arbfleet_vault   LOGIN, CREATEROLE: the only account Vault uses. Not a superuser.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'arbfleet_writer') THEN
    CREATE ROLE arbfleet_writer NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'arbfleet_vault') THEN
    CREATE ROLE arbfleet_vault LOGIN CREATEROLE;
  END IF;
END
$$;
GRANT arbfleet_writer TO arbfleet_vault WITH ADMIN OPTION;
-- Vault ends a revoked user's sessions before dropping it.
GRANT pg_signal_backend TO arbfleet_vault;
GRANT CREATE, USAGE ON SCHEMA public TO arbfleet_writer;
-- The database the admin DSN names: the writer's.
DO $$
BEGIN
  EXECUTE format('GRANT CONNECT, CREATE, TEMPORARY ON DATABASE %I TO arbfleet_writer',
                 current_database());
END
$$;
