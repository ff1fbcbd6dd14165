-- The channel mapping in force: the user's file (VORONKA_CHANNEL_MAPPING, validated and loaded
-- into raw.channel_mapping by warehouse/channel_mapping.py before dbt runs), or the shipped
-- `channel_mapping` seed when that table was never loaded (a bare `dbt build`). Values are
-- trimmed and lower-cased; an empty cell (the tag is missing) is null; '*' is any value.
-- How rows are matched: macros/identity.sql select_channel; the user's manual: docs/CHANNELS.md.
-- depends_on: {{ ref('channel_mapping') }}
{%- set loaded = source('voronka_settings', 'channel_mapping') -%}
{%- set found = false -%}
{%- if execute -%}
    {%- set found = adapter.get_relation(
        database=loaded.database, schema=loaded.schema, identifier=loaded.identifier
    ) is not none -%}
{%- endif %}
with

mapping as (

    {% if found -%}
    select utm_source, utm_medium, channel, description, 'file' as origin
    from {{ loaded }}
    {%- else -%}
    select utm_source, utm_medium, channel, description, 'seed' as origin
    from {{ ref('channel_mapping') }}
    {%- endif %}

),

final as (

    select
        nullif(lower(trim(utm_source)), '') as utm_source,
        nullif(lower(trim(utm_medium)), '') as utm_medium,
        lower(trim(channel)) as channel,
        description,
        origin
    from mapping

)

select * from final
