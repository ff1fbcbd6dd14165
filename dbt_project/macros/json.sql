{#-
    Portable JSON access. Models never write adapter-specific JSON SQL; they call these.
    A path is dotted, with array indexes as numbers: 'values.0.value', '_embedded.contacts'.
    DuckDB stores payloads as JSON, PostgreSQL as jsonb.
-#}

{%- macro _json_path_parts(path) -%}
    {%- do return(path.split('.') if path else []) -%}
{%- endmacro -%}

{#- The value at `path` as text (SQL NULL when missing or JSON null). -#}
{% macro json_str(column, path) -%}
    {{ return(adapter.dispatch('json_str', 'voronka')(column, path)) }}
{%- endmacro %}

{% macro default__json_str(column, path) -%}
    json_extract_string({{ column }}, '{{ voronka._duckdb_json_path(path) }}')
{%- endmacro %}

{% macro postgres__json_str(column, path) -%}
    ({{ column }} #>> '{{ voronka._postgres_json_path(path) }}')
{%- endmacro %}

{#-
    Several text values of one JSON column at once, as columns: `fields` maps each column's
    name to its path (a list of paths names each column by its path). Staging reads a
    record's fields this way, not with one json_str a field: DuckDB parses the document anew
    for every json_extract call and each call keeps its parses' memory to the end of the query
    (duckdb/duckdb#8734, "extract a list of paths" in DuckDB's JSON docs), so 15 fields of
    27k amoCRM leads took 460 MB. Here every column indexes the same list-of-paths extract,
    which DuckDB's optimizer evaluates once per row (common subexpressions).
-#}
{% macro json_str_columns(column, fields) -%}
    {%- set named = {} -%}
    {%- for name in fields -%}
        {%- do named.update({name: fields[name] if fields is mapping else name}) -%}
    {%- endfor -%}
    {{ return(adapter.dispatch('json_str_columns', 'voronka')(column, named)) }}
{%- endmacro %}

{% macro default__json_str_columns(column, fields) -%}
    {%- set paths = [] -%}
    {%- for path in fields.values() -%}
        {%- do paths.append("'" ~ voronka._duckdb_json_path(path) ~ "'") -%}
    {%- endfor -%}
    {%- for name in fields -%}
        json_extract_string({{ column }}, [{{ paths | join(', ') }}])[{{ loop.index }}]
            as {{ name }}{{ ',' if not loop.last }}
    {% endfor -%}
{%- endmacro %}

{% macro postgres__json_str_columns(column, fields) -%}
    {%- for name, path in fields.items() -%}
        {{ voronka.postgres__json_str(column, path) }} as {{ name }}{{ ',' if not loop.last }}
    {% endfor -%}
{%- endmacro %}

{#- The JSON value at `path` (JSON in DuckDB, jsonb in PostgreSQL). -#}
{% macro json_get(column, path) -%}
    {{ return(adapter.dispatch('json_get', 'voronka')(column, path)) }}
{%- endmacro %}

{% macro default__json_get(column, path) -%}
    json_extract({{ column }}, '{{ voronka._duckdb_json_path(path) }}')
{%- endmacro %}

{% macro postgres__json_get(column, path) -%}
    ({{ column }} #> '{{ voronka._postgres_json_path(path) }}')
{%- endmacro %}

{#-
    A FROM-clause fragment that joins one row per element of the JSON array at `path`,
    exposing `<alias>.value` (the element) and `<alias>.ordinal` (1-based position).
    A missing or null array yields no rows (use it with care in outer-join positions).
-#}
{% macro json_array_elements(column, path, alias) -%}
    {{ return(adapter.dispatch('json_array_elements', 'voronka')(column, path, alias)) }}
{%- endmacro %}

{% macro default__json_array_elements(column, path, alias) -%}
    cross join lateral (
        select
            unnest(json_extract({{ column }}, '{{ voronka._duckdb_json_path(path) }}[*]')) as value,
            generate_subscripts(
                json_extract({{ column }}, '{{ voronka._duckdb_json_path(path) }}[*]'), 1
            ) as ordinal
    ) as {{ alias }}
{%- endmacro %}

{% macro postgres__json_array_elements(column, path, alias) -%}
    cross join lateral jsonb_array_elements(
        case
            when jsonb_typeof({{ column }} #> '{{ voronka._postgres_json_path(path) }}') = 'array'
                then {{ column }} #> '{{ voronka._postgres_json_path(path) }}'
            else '[]'::jsonb
        end
    ) with ordinality as {{ alias }}(value, ordinal)
{%- endmacro %}

{% macro _duckdb_json_path(path) -%}
    {%- set ns = namespace(out='$') -%}
    {%- for part in voronka._json_path_parts(path) -%}
        {%- if part.isdigit() -%}
            {%- set ns.out = ns.out ~ '[' ~ part ~ ']' -%}
        {%- else -%}
            {%- set ns.out = ns.out ~ '.' ~ part -%}
        {%- endif -%}
    {%- endfor -%}
    {{- ns.out -}}
{%- endmacro %}

{% macro _postgres_json_path(path) -%}
    {{- '{' ~ voronka._json_path_parts(path) | join(',') ~ '}' -}}
{%- endmacro %}
