-- One row per stretch of time an amoCRM buyer spent in one buyer-funnel status: the first
-- spell runs from the buyer's creation in the status the first status-change event left
-- (value_before; no event at all: the buyer's current status), each event starts the next.
-- Deleted buyers and anything after the as-of date are left out.
with

as_of as (

    select * from {{ ref('int_as_of_date') }}

),

buyers as (

    select customers.account, customers.amocrm_customer_id, customers.status_id,
           customers.created_at
    from {{ ref('stg_amocrm__customers') }} as customers
    cross join as_of
    where not customers.is_deleted
        and customers.created_at < cast(as_of.day_after_as_of_date as timestamp)

),

-- every event of the buyer, numbered: the first one tells the status the buyer was created
-- in, even when it happened after the as-of date
all_events as (

    select
        events.account,
        events.amocrm_customer_id,
        events.event_id,
        events.status_id_before,
        events.status_id_after,
        events.changed_at,
        row_number() over (
            partition by events.account, events.amocrm_customer_id
            order by events.changed_at, events.event_id
        ) as event_number
    from {{ ref('stg_amocrm__customer_status_events') }} as events
    inner join buyers
        on events.account = buyers.account
        and events.amocrm_customer_id = buyers.amocrm_customer_id

),

events as (

    select all_events.*
    from all_events
    cross join as_of
    where all_events.changed_at < cast(as_of.day_after_as_of_date as timestamp)

),

first_spells as (

    select
        buyers.account,
        buyers.amocrm_customer_id,
        0 as spell_number,
        'created' as entered_by,
        coalesce(first_event.status_id_before, buyers.status_id) as status_id,
        buyers.created_at as valid_from
    from buyers
    left join all_events as first_event
        on buyers.account = first_event.account
        and buyers.amocrm_customer_id = first_event.amocrm_customer_id
        and first_event.event_number = 1

),

moved_spells as (

    select
        account,
        amocrm_customer_id,
        event_number as spell_number,
        'moved' as entered_by,
        status_id_after as status_id,
        changed_at as valid_from
    from events

),

spells as (

    select * from first_spells
    union all
    select * from moved_spells

),

final as (

    select
        account,
        amocrm_customer_id,
        spell_number,
        cast(entered_by as {{ dbt.type_string() }}) as entered_by,
        status_id,
        valid_from,
        lead(valid_from) over (
            partition by account, amocrm_customer_id order by spell_number
        ) as valid_to
    from spells

)

select * from final
