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
