{#-
    `select * from` a raw source table, or an empty relation of the same shape when the
    table has not been landed yet (e.g. a source that is not configured, or the first run
    before any events arrived). Staging then builds empty instead of failing the run.
    The source() call keeps the lineage either way.
-#}
{% macro raw_source(source_name, table_name) -%}
    {%- set relation = source(source_name, table_name) -%}
    {%- set found = true -%}
    {%- if execute -%}
        {%- set found = adapter.get_relation(
            database=relation.database, schema=relation.schema, identifier=relation.identifier
        ) is not none -%}
    {%- endif -%}
    {%- if found -%}
        select * from {{ relation }}
    {%- else -%}
        {{ log("raw table " ~ relation ~ " not landed yet: staging it as empty", info=true) }}
        select
            cast(null as varchar) as source,
            cast(null as varchar) as account,
            cast(null as varchar) as entity,
            cast(null as varchar) as record_id,
            cast(null as {{ voronka.json_type() }}) as payload,
            cast(null as varchar) as payload_hash,
            cast(null as timestamp) as updated_at,
            cast(null as timestamp) as extracted_at,
            cast(null as varchar) as run_id
        where 1 = 0
    {%- endif -%}
{%- endmacro %}

{% macro json_type() -%}
    {{ return(adapter.dispatch('json_type', 'voronka')()) }}
{%- endmacro %}

{% macro default__json_type() -%}json{%- endmacro %}

{% macro postgres__json_type() -%}jsonb{%- endmacro %}
