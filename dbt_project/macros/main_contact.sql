{#-
    `select account, record_id, contact_id` for each record of `relation` (a `latest` CTE of
    amoCRM records): its main contact in `_embedded.contacts`, or the first linked contact
    when none is flagged main. Leads and buyers share the rule (orders belong to this person).
-#}
{% macro amocrm_main_contact(relation) -%}
    select account, record_id, contact_id
    from (
        select
            {{ relation }}.account,
            {{ relation }}.record_id,
            cast({{ json_str('c.value', 'id') }} as bigint) as contact_id,
            row_number() over (
                partition by {{ relation }}.account, {{ relation }}.record_id
                order by
                    case when {{ json_str('c.value', 'is_main') }} = 'true' then 0 else 1 end,
                    c.ordinal
            ) as contact_rank
        from {{ relation }}
        {{ json_array_elements(relation ~ '.payload', '_embedded.contacts', 'c') }}
    ) as linked_contacts
    where contact_rank = 1
{%- endmacro %}
