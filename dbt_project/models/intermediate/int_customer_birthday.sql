-- One row per customer with a known birthday (audiences: birthday_within_days). A birthday is
-- recorded on CRM contacts (amoCRM "birthday" field, Bitrix24 BIRTHDATE); when a customer's
-- contacts disagree, the most recently updated contact wins (ties: the later date), and
-- known_birthdays says how many different days were recorded.
with

resolved as (

    select node_id, customer_id
    from {{ ref('int_customers__resolved') }}
    where node_source in ('amocrm', 'bitrix24')

),

contact_birthdays as (

    select
        {{ node_id('amocrm', 'account', 'contact_id') }} as node_id,
        birthday,
        updated_at
    from {{ ref('stg_amocrm__contacts') }}
    where birthday is not null
    union all
    select
        {{ node_id('bitrix24', 'account', 'contact_id') }} as node_id,
        birthday,
        updated_at
    from {{ ref('stg_bitrix24__contacts') }}
    where birthday is not null

),

customer_birthdays as (

    select
        resolved.customer_id,
        contact_birthdays.birthday,
        row_number() over (
            partition by resolved.customer_id
            order by contact_birthdays.updated_at desc, contact_birthdays.birthday desc
        ) as recency_rank
    from resolved
    inner join contact_birthdays
        on resolved.node_id = contact_birthdays.node_id

),

distinct_days as (

    select customer_id, count(distinct birthday) as known_birthdays
    from customer_birthdays
    group by customer_id

),

final as (

    select
        customer_birthdays.customer_id,
        customer_birthdays.birthday,
        distinct_days.known_birthdays
    from customer_birthdays
    inner join distinct_days
        on customer_birthdays.customer_id = distinct_days.customer_id
    where customer_birthdays.recency_rank = 1

)

select * from final
