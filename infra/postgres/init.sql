-- Postgres bootstrap: the application database and one login role per service that owns its own schema and
-- can touch nothing else. The postgres image runs it once, on an empty data directory, as the superuser;
-- elsewhere: AUTH_DB_PASSWORD=… CHAT_DB_PASSWORD=… BILLING_DB_PASSWORD=… psql -U postgres -f init.sql
-- Names can be overridden with psql -v (app_db, auth_role, chat_role, billing_role); needs psql 15+.
\set ON_ERROR_STOP on

\if :{?app_db}
\else
  \set app_db chat_platform
\endif
\if :{?auth_role}
\else
  \set auth_role auth_service
\endif
\if :{?chat_role}
\else
  \set chat_role chat_service
\endif
\if :{?billing_role}
\else
  \set billing_role billing_service
\endif

\getenv auth_password AUTH_DB_PASSWORD
\getenv chat_password CHAT_DB_PASSWORD
\getenv billing_password BILLING_DB_PASSWORD
\if :{?auth_password}
\else
  \set auth_password ''
\endif
select :'auth_password' = '' as missing \gset
\if :missing
  \warn 'init.sql: AUTH_DB_PASSWORD is not set'
  select 1 / 0 as "AUTH_DB_PASSWORD is not set";
\endif
\if :{?chat_password}
\else
  \set chat_password ''
\endif
select :'chat_password' = '' as missing \gset
\if :missing
  \warn 'init.sql: CHAT_DB_PASSWORD is not set'
  select 1 / 0 as "CHAT_DB_PASSWORD is not set";
\endif
\if :{?billing_password}
\else
  \set billing_password ''
\endif
select :'billing_password' = '' as missing \gset
\if :missing
  \warn 'init.sql: BILLING_DB_PASSWORD is not set'
  select 1 / 0 as "BILLING_DB_PASSWORD is not set";
\endif

-- NOINHERIT and no CREATEDB/CREATEROLE: a service role has exactly what is granted below.
create role :"auth_role" login noinherit password :'auth_password';
create role :"chat_role" login noinherit password :'chat_password';
create role :"billing_role" login noinherit password :'billing_password';

select format('create database %I', :'app_db')
  where not exists (select from pg_database where datname = :'app_db') \gexec

-- Only the three services may connect; none may create schemas or temporary tables.
revoke all on database :"app_db" from public;
grant connect on database :"app_db" to :"auth_role", :"chat_role", :"billing_role";

\connect :"app_db"

-- The public schema stays empty: nobody but the superuser may use it.
revoke all on schema public from public;

-- Each service owns its schema (it runs its own migrations at boot) and has no usage on the others'.
create schema auth authorization :"auth_role";
create schema chat authorization :"chat_role";
create schema billing authorization :"billing_role";

alter role :"auth_role" in database :"app_db" set search_path = auth;
alter role :"chat_role" in database :"app_db" set search_path = chat;
alter role :"billing_role" in database :"app_db" set search_path = billing;
