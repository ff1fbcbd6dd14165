{#-
    Custom schemas are used as is (staging, intermediate, marts, seeds), not prefixed with
    the target schema: the schema names are part of the mart contract.
    The var `marts_schema` redirects the marts: on PostgreSQL the pipeline builds them into
    `marts_build` (not readable by BI) and publication swaps them into `marts` once every
    blocking check passed (warehouse/publication.py). Without the var they go to `marts`.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- elif custom_schema_name | trim == 'marts' -%}
        {{ var('marts_schema', 'marts') }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
