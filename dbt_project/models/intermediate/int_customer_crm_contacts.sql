-- One row per customer and CRM contact (amoCRM, Bitrix24) of that customer, with the contact's
-- responsible manager: where CRM write-back lands (audiences/destinations: a segment tag or flag
-- on every contact, a task or deal on the primary one). is_primary marks the customer's most
-- recently updated contact per CRM account; its manager is the customer's current manager.
with

amocrm as (

    select
        'amocrm' as crm,
        account,
        contact_id,
        cast(responsible_user_id as bigint) as responsible_user_id,
        updated_at,
        {{ node_id('amocrm', 'account', 'contact_id') }} as node_id
    from {{ ref('stg_amocrm__contacts') }}
    where not is_deleted

),

bitrix24 as (

    select
        'bitrix24' as crm,
        account,
        contact_id,
        cast(responsible_user_id as bigint) as responsible_user_id,
        updated_at,
        {{ node_id('bitrix24', 'account', 'contact_id') }} as node_id
    from {{ ref('stg_bitrix24__contacts') }}

),

contacts as (

    select * from amocrm
    union all
    select * from bitrix24

),

joined as (

    select
        resolved.customer_id,
        contacts.crm,
        contacts.account,
        contacts.contact_id,
        contacts.responsible_user_id,
        contacts.updated_at
    from contacts
    inner join {{ ref('int_customers__resolved') }} as resolved
        on contacts.node_id = resolved.node_id

),

final as (

    select
        customer_id,
        crm,
        account,
        contact_id,
        responsible_user_id,
        updated_at,
        row_number() over (
            partition by customer_id, crm, account
            order by updated_at desc nulls last, contact_id desc
        ) = 1 as is_primary
    from joined

)

select * from final
