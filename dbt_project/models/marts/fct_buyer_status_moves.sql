-- amoCRM buyer funnel: moves between statuses per month (status-change events up to the
-- as-of date), one row per month, from-status and to-status that had any.
with

spells as (

    select * from {{ ref('int_buyer_status_spells') }}

),

statuses as (

    select account, status_id, status_name, status_sort
    from {{ ref('stg_amocrm__customer_statuses') }}

),

moves as (

    select
        moved.account,
        {{ month_start('moved.valid_from') }} as month,
        previous.status_id as from_status_id,
        moved.status_id as to_status_id,
        moved.amocrm_customer_id
    from spells as moved
    inner join spells as previous
        on moved.account = previous.account
        and moved.amocrm_customer_id = previous.amocrm_customer_id
        and moved.spell_number = previous.spell_number + 1
    where moved.entered_by = 'moved'

),

final as (

    select
        moves.month,
        moves.account,
        moves.from_status_id,
        from_status.status_name as from_status_name,
        moves.to_status_id,
        to_status.status_name as to_status_name,
        count(*) as moves,
        count(distinct moves.amocrm_customer_id) as buyers
    from moves
    left join statuses as from_status
        on moves.account = from_status.account and moves.from_status_id = from_status.status_id
    left join statuses as to_status
        on moves.account = to_status.account and moves.to_status_id = to_status.status_id
    group by moves.month, moves.account, moves.from_status_id, from_status.status_name,
             moves.to_status_id, to_status.status_name

)

select * from final
