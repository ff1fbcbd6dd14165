{#- Shared rules of the unified CRM model: UTM → channel, identity-graph nodes, contact points. -#}
{#-
    `select <keys>, channel from <relation>`: the acquisition channel of rows that carry
    utm_source / utm_medium (trimmed, lower-cased, null when missing), through the mapping in
    force (int_channel_mapping: the user's VORONKA_CHANNEL_MAPPING file or the shipped seed).
    The most specific row wins: exact (source, medium) > exact source with '*' medium > '*'
    source with exact medium > '*','*'. '*' matches any value, a missing one included; an
    empty cell (null) matches only a missing tag. A row with no UTM at all is matched only by
    the row whose two cells are empty, else it is `direct`; a tagged row no rule matches is
    `other`. One left join per level: each level has at most one row per tag (the mapping is
    unique by pair), so the relation keeps its row count. Leads and file orders share it.
    docs/CHANNELS.md is the user's manual.
-#}
{% macro select_channel(relation, keys) -%}
    select
        {% for key in keys -%}
        tagged.{{ key }},
        {% endfor -%}
        case
            when tagged.utm_source is null and tagged.utm_medium is null
                then coalesce(no_utm.channel, 'direct')
            else coalesce(
                exact_pair.channel, source_any_medium.channel, any_source_medium.channel,
                any_any.channel, 'other'
            )
        end as channel
    from {{ relation }} as tagged
    left join {{ ref('int_channel_mapping') }} as exact_pair
        on coalesce(exact_pair.utm_source, '') = coalesce(tagged.utm_source, '')
        and coalesce(exact_pair.utm_medium, '') = coalesce(tagged.utm_medium, '')
        and coalesce(exact_pair.utm_source, '') <> '*'
        and coalesce(exact_pair.utm_medium, '') <> '*'
    left join {{ ref('int_channel_mapping') }} as source_any_medium
        on coalesce(source_any_medium.utm_source, '') = coalesce(tagged.utm_source, '')
        and coalesce(source_any_medium.utm_source, '') <> '*'
        and source_any_medium.utm_medium = '*'
    left join {{ ref('int_channel_mapping') }} as any_source_medium
        on any_source_medium.utm_source = '*'
        and coalesce(any_source_medium.utm_medium, '') = coalesce(tagged.utm_medium, '')
        and coalesce(any_source_medium.utm_medium, '') <> '*'
    left join {{ ref('int_channel_mapping') }} as any_any
        on any_any.utm_source = '*'
        and any_any.utm_medium = '*'
    left join {{ ref('int_channel_mapping') }} as no_utm
        on no_utm.utm_source is null
        and no_utm.utm_medium is null
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
