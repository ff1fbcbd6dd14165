-- amoCRM buyer funnel («Покупатели») per month and status: buyers in the status at the month
-- end, moves into and out of it during the month, purchases expected and made by the buyers
-- who started the month in it, and overdue buyers at the month end. Months from the first
-- buyer's creation to the as-of month (which ends on the as-of date).
-- PostgreSQL: the range joins below over freshly built (unanalysed) tables make the planner
-- guess a huge cost and JIT-compile the query, which then takes seconds instead of
-- milliseconds; JIT is switched off for this model's transaction only.
{{ config(pre_hook=["set local jit = off"] if target.type == 'postgres' else []) }}

with

months as (

    select month, next_month, period_stop, period_end, month_complete
    from {{ ref('int_months') }}

),

spells as (

    select * from {{ ref('int_buyer_status_spells') }}

),

periods as (

    select * from {{ ref('int_buyer_purchase_periods') }}

),

statuses as (

    select account, status_id, status_name, status_sort, status_type
    from {{ ref('stg_amocrm__customer_statuses') }}

),

first_month as (

    select account, min({{ month_start('valid_from') }}) as first_month
    from spells
    group by account

),

account_months as (

    select months.*, first_month.account,
           cast(months.period_stop as timestamp) as stop_at,
           cast(months.month as timestamp) as month_at,
           cast(months.next_month as timestamp) as next_month_at
    from months
    inner join first_month
        on months.month >= first_month.first_month

),

grid as (

    select account_months.*, statuses.status_id, statuses.status_name,
           statuses.status_sort, statuses.status_type
    from account_months
    inner join statuses
        on account_months.account = statuses.account

),

-- one row per buyer and month (from the account's months, not the grid's month x status)
buyer_months as (

    select distinct account_months.account, account_months.month, account_months.month_at,
           account_months.next_month_at, account_months.stop_at, spells.amocrm_customer_id
    from account_months
    inner join spells
        on account_months.account = spells.account
        and spells.valid_from < account_months.stop_at

),

-- the status a buyer was in when the month began (created during the month: the status
-- they were created in): the first spell still running at the month's start
start_spell as (

    select buyer_months.account, buyer_months.month, buyer_months.amocrm_customer_id,
           min(spells.spell_number) as spell_number
    from buyer_months
    inner join spells
        on buyer_months.account = spells.account
        and buyer_months.amocrm_customer_id = spells.amocrm_customer_id
        and spells.valid_from < buyer_months.stop_at
        and (spells.valid_to is null or spells.valid_to >= buyer_months.month_at)
    group by buyer_months.account, buyer_months.month, buyer_months.amocrm_customer_id

),

start_status as (

    select start_spell.account, start_spell.month, start_spell.amocrm_customer_id,
           spells.status_id
    from start_spell
    inner join spells
        on start_spell.account = spells.account
        and start_spell.amocrm_customer_id = spells.amocrm_customer_id
        and start_spell.spell_number = spells.spell_number

),

-- the status at the month end: the spell running at the last moment before period_stop
end_status as (

    select buyer_months.account, buyer_months.month, buyer_months.amocrm_customer_id,
           spells.status_id
    from buyer_months
    inner join spells
        on buyer_months.account = spells.account
        and buyer_months.amocrm_customer_id = spells.amocrm_customer_id
        and spells.valid_from < buyer_months.stop_at
        and (spells.valid_to is null or spells.valid_to >= buyer_months.stop_at)

),

at_end as (

    select account, month, status_id, count(*) as buyers_at_month_end
    from end_status
    group by account, month, status_id

),

entered as (

    select grid.account, grid.month, grid.status_id, count(*) as entered
    from grid
    inner join spells
        on grid.account = spells.account
        and grid.status_id = spells.status_id
        and spells.valid_from >= grid.month_at
        and spells.valid_from < grid.stop_at
    group by grid.account, grid.month, grid.status_id

),

exited as (

    select grid.account, grid.month, grid.status_id, count(*) as exited
    from grid
    inner join spells
        on grid.account = spells.account
        and grid.status_id = spells.status_id
        and spells.valid_to >= grid.month_at
        and spells.valid_to < grid.stop_at
    group by grid.account, grid.month, grid.status_id

),

-- purchase periods whose expected date falls in the calendar month (the whole as-of month:
-- what is planned for it), by the buyer's status at the month's start
expected as (

    select start_status.account, start_status.month, start_status.status_id,
           count(*) as purchases_expected
    from start_status
    inner join buyer_months
        on start_status.account = buyer_months.account
        and start_status.month = buyer_months.month
        and start_status.amocrm_customer_id = buyer_months.amocrm_customer_id
    inner join periods
        on start_status.account = periods.account
        and start_status.amocrm_customer_id = periods.amocrm_customer_id
        and periods.started_at < buyer_months.stop_at
        and periods.expected_purchase_at >= buyer_months.month_at
        and periods.expected_purchase_at < buyer_months.next_month_at
    group by start_status.account, start_status.month, start_status.status_id

),

-- purchases (transactions) completed in the month up to the as-of date, by start status
made as (

    select start_status.account, start_status.month, start_status.status_id,
           count(*) as purchases_made
    from start_status
    inner join buyer_months
        on start_status.account = buyer_months.account
        and start_status.month = buyer_months.month
        and start_status.amocrm_customer_id = buyer_months.amocrm_customer_id
    inner join periods
        on start_status.account = periods.account
        and start_status.amocrm_customer_id = periods.amocrm_customer_id
        and periods.started_by_transaction_id is not null
        and periods.started_at >= buyer_months.month_at
        and periods.started_at < buyer_months.stop_at
    group by start_status.account, start_status.month, start_status.status_id

),

-- the buyer's period running at the month end and its next date by amoCRM's own rule
current_period as (

    select buyer_months.account, buyer_months.month, buyer_months.amocrm_customer_id,
           max(periods.period_number) as period_number
    from buyer_months
    inner join periods
        on buyer_months.account = periods.account
        and buyer_months.amocrm_customer_id = periods.amocrm_customer_id
        and periods.started_at < buyer_months.stop_at
    group by buyer_months.account, buyer_months.month, buyer_months.amocrm_customer_id

),

overdue as (

    select end_status.account, end_status.month, end_status.status_id,
           count(*) as buyers_overdue_at_month_end
    from end_status
    inner join current_period
        on end_status.account = current_period.account
        and end_status.month = current_period.month
        and end_status.amocrm_customer_id = current_period.amocrm_customer_id
    inner join periods
        on current_period.account = periods.account
        and current_period.amocrm_customer_id = periods.amocrm_customer_id
        and current_period.period_number = periods.period_number
    inner join buyer_months
        on end_status.account = buyer_months.account
        and end_status.month = buyer_months.month
        and end_status.amocrm_customer_id = buyer_months.amocrm_customer_id
    where periods.expected_purchase_at < buyer_months.stop_at
    group by end_status.account, end_status.month, end_status.status_id

),

final as (

    select
        grid.month,
        grid.period_end,
        grid.month_complete,
        grid.account,
        grid.status_id,
        grid.status_name,
        grid.status_sort,
        grid.status_type,
        coalesce(at_end.buyers_at_month_end, 0) as buyers_at_month_end,
        coalesce(entered.entered, 0) as entered,
        coalesce(exited.exited, 0) as exited,
        coalesce(expected.purchases_expected, 0) as purchases_expected,
        coalesce(made.purchases_made, 0) as purchases_made,
        coalesce(overdue.buyers_overdue_at_month_end, 0) as buyers_overdue_at_month_end
    from grid
    left join at_end
        on grid.account = at_end.account and grid.month = at_end.month
        and grid.status_id = at_end.status_id
    left join entered
        on grid.account = entered.account and grid.month = entered.month
        and grid.status_id = entered.status_id
    left join exited
        on grid.account = exited.account and grid.month = exited.month
        and grid.status_id = exited.status_id
    left join expected
        on grid.account = expected.account and grid.month = expected.month
        and grid.status_id = expected.status_id
    left join made
        on grid.account = made.account and grid.month = made.month
        and grid.status_id = made.status_id
    left join overdue
        on grid.account = overdue.account and grid.month = overdue.month
        and grid.status_id = overdue.status_id

)

select * from final
