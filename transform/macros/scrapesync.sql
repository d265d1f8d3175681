{#- Helpers shared by the models; plain SQL that DuckDB and PostgreSQL both run. -#}

{% macro scrapesync_has(dataset, table) -%}
  {#- true when `dataset.table` exists in the destination (the runner passes the list) -#}
  {%- set present = var('scrapesync_tables', none) -%}
  {%- do return(present is none or (dataset ~ '.' ~ table) in present) -%}
{%- endmacro %}


{% macro scrapesync_columns(relation) -%}
  {#- lower-cased column names of `relation` at run time; [] while dbt parses (no database) -#}
  {%- if execute -%}
    {%- set columns = adapter.get_columns_in_relation(relation) -%}
    {%- do return(columns | map(attribute='name') | map('lower') | list) -%}
  {%- endif -%}
  {%- do return([]) -%}
{%- endmacro %}


{% macro scrapesync_val(columns, name, type) -%}
  {#- `name` cast to `type`, or a typed NULL when the table has no such column yet: dlt adds a
      column only once a value was seen (e.g. `finished` before any run ended) -#}
  {%- if name | lower in columns -%}
    cast({{ adapter.quote(name) }} as {{ type }})
  {%- else -%}
    cast(null as {{ type }})
  {%- endif -%}
{%- endmacro %}


{% macro scrapesync_col(columns, name, type, alias=none) -%}
  {{ scrapesync_val(columns, name, type) }} as {{ adapter.quote(alias or name) }}
{%- endmacro %}


{% macro scrapesync_prefixed(columns, prefix) -%}
  {#- every column starting with `prefix` (e.g. Reworkd's `data__` fields), as a select list
      fragment with a leading comma; the fields are the customer's own and change over time -#}
  {%- for name in columns if name.startswith(prefix) -%}
    , {{ adapter.quote(name) }}
  {%- endfor -%}
{%- endmacro %}


{% macro ts() -%}timestamp with time zone{%- endmacro %}
{% macro txt() -%}varchar{%- endmacro %}
{% macro dbl() -%}double precision{%- endmacro %}


{% macro utc_date(column) -%}
  {#- the UTC calendar day of a timestamptz, whatever the session's time zone -#}
  cast(({{ column }} at time zone 'UTC') as date)
{%- endmacro %}


{% macro url_domain(column) -%}
  {#- host of an http(s) URL, lower-cased, without port; NULL for NULL -#}
  lower(split_part(split_part(split_part(split_part({{ column }}, '://', 2), '/', 1), '?', 1), ':', 1))
{%- endmacro %}


{% macro epoch_s(later, earlier) -%}
  {#- seconds between two timestamptz values -#}
  (extract(epoch from {{ later }}) - extract(epoch from {{ earlier }}))
{%- endmacro %}
