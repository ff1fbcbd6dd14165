{#- Shared rules of the unified CRM model: UTM → channel, identity-graph nodes, contact points. -#}
{#-
    `select <keys>, channel from <relation>`: the acquisition channel of rows that carry
    utm_source / utm_medium, through the editable `channel_mapping` seed. An exact
    (utm_source, utm_medium) row wins, then a '*' source row for the medium; no UTM at all is
    `direct`; anything else is `other`. Leads and file orders share this one rule.
-#}
{% macro select_channel(relation, keys) -%}
    select
        {% for key in keys -%}
        tagged.{{ key }},
        {% endfor -%}
        case
            when tagged.utm_source is null and tagged.utm_medium is null then 'direct'
            else coalesce(exact_match.channel, any_source.channel, 'other')
        end as channel
    from {{ relation }} as tagged
    left join (
        select lower(trim(utm_source)) as utm_source, lower(trim(utm_medium)) as utm_medium,
            channel
        from {{ ref('channel_mapping') }}
    ) as exact_match
        on exact_match.utm_source <> '*'
        and tagged.utm_source = exact_match.utm_source
        and tagged.utm_medium = exact_match.utm_medium
    left join (
        select lower(trim(utm_medium)) as utm_medium, channel
        from {{ ref('channel_mapping') }}
        where trim(utm_source) = '*'
    ) as any_source
        on tagged.utm_medium = any_source.utm_medium
{%- endmacro %}

{#- The identity-graph node of a contact-like record: '<source>:<account>:<id>'. -#}
{% macro node_id(source_name, account, id_expr) -%}
    '{{ source_name }}:' || {{ account }} || ':' || cast({{ id_expr }} as varchar)
{%- endmacro %}

{#-
    The contact points of one source from raw.contact_points (normalised in Python by
    warehouse/contact_points.py), typed: contact_id as `id_type` (bigint for CRM contacts,
    varchar for file orders, whose node id is the raw record_id).
-#}
{% macro staged_contact_points(source_name, id_type) -%}
with

source as (

    select * from {{ source('voronka_derived', 'contact_points') }}
    where source = '{{ source_name }}'

),

renamed as (

    select
        account,
        cast(contact_id as {{ id_type }}) as contact_id,
        kind as point_kind,
        value_raw,
        value_normalized,
        value_normalized is not null as is_valid
    from source

)

select distinct * from renamed
{%- endmacro %}
