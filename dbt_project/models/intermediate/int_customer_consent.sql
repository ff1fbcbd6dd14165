-- One row per customer that has at least one resolved CRM contact (amoCRM or Bitrix24), with
-- the marketing-consent flags over all of the customer's contacts (docs/SOURCES_CONTRACT.md):
--   consent_withdrawn     = any contact withdrew consent;
--   do_not_contact        = any contact is flagged do-not-contact;
--   has_marketing_consent = some contact gave consent and none withdrew;
--   is_contactable        = not consent_withdrawn and not do_not_contact.
-- A CRM node whose contact was never landed (a lead pointing at a missing contact) counts as
-- "unknown": it neither gives nor withdraws consent.
with

resolved as (

    select node_id, node_source, customer_id
    from {{ ref('int_customers__resolved') }}
    where node_source in ('amocrm', 'bitrix24')

),

contact_consent as (

    select
        {{ node_id('amocrm', 'account', 'contact_id') }} as node_id,
        marketing_consent,
        is_do_not_contact
    from {{ ref('stg_amocrm__contacts') }}
    union all
    select
        {{ node_id('bitrix24', 'account', 'contact_id') }} as node_id,
        marketing_consent,
        is_do_not_contact
    from {{ ref('stg_bitrix24__contacts') }}

),

per_customer as (

    select
        resolved.customer_id,
        count(*) as crm_contacts,
        max(case when contact_consent.marketing_consent then 1 else 0 end) as any_given,
        max(case when contact_consent.marketing_consent = false then 1 else 0 end)
            as any_withdrawn,
        max(case when contact_consent.is_do_not_contact then 1 else 0 end) as any_do_not_contact
    from resolved
    left join contact_consent
        on resolved.node_id = contact_consent.node_id
    group by resolved.customer_id

),

final as (

    select
        customer_id,
        crm_contacts,
        any_withdrawn = 1 as consent_withdrawn,
        any_do_not_contact = 1 as do_not_contact,
        any_given = 1 and any_withdrawn = 0 as has_marketing_consent,
        any_withdrawn = 0 and any_do_not_contact = 0 as is_contactable
    from per_customer

)

select * from final
