-- Manager performance per responsible user (both CRMs) and month, at the as-of date.
-- The month is the leads' creation month (a cohort of leads): leads_assigned = leads created
-- in the month with the manager responsible (the current responsible user: the CRMs keep no
-- reassignment history); leads_open / won / lost = their state at the as-of date;
-- win_rate = won / assigned; revenue = their won amount; aov = revenue / won;
-- median_sales_cycle_days over those won (created -> won, fractional days).
-- won_closed_in_month / revenue_closed_in_month: the manager's leads won with their won date in
-- the month, whatever their creation month (what sales heads report monthly).
-- month_complete (docs metrics.md, "Periods"): the as-of date is after the month's last day
-- (int_months); an incomplete month's leads had less time to close.
with

outcomes as (

    select * from {{ ref('int_lead_outcomes') }}

),

users as (

    select * from {{ ref('int_crm__users') }}

),

months as (

    select month, month_complete from {{ ref('int_months') }}

),

by_created_month as (

    select
        crm,
        account,
        responsible_user_id,
        created_month as month,
        count(*) as leads_assigned,
        sum(case when outcome = 'open' then 1 else 0 end) as leads_open,
        sum(case when outcome = 'won' then 1 else 0 end) as leads_won,
        sum(case when outcome = 'lost' then 1 else 0 end) as leads_lost,
        sum(case when outcome = 'won' then amount end) as revenue,
        {{ median("case when outcome = 'won' then sales_cycle_days end") }}
            as median_sales_cycle_days
    from outcomes
    group by crm, account, responsible_user_id, created_month

),

by_won_month as (

    select
        crm,
        account,
        responsible_user_id,
        won_month as month,
        count(*) as won_closed_in_month,
        sum(amount) as revenue_closed_in_month
    from outcomes
    where outcome = 'won'
    group by crm, account, responsible_user_id, won_month

),

manager_months as (

    select crm, account, responsible_user_id, month from by_created_month
    union
    select crm, account, responsible_user_id, month from by_won_month

),

final as (

    select
        manager_months.crm,
        manager_months.account,
        manager_months.responsible_user_id,
        users.user_name as manager_name,
        manager_months.month,
        cast(coalesce(by_created_month.leads_assigned, 0) as bigint) as leads_assigned,
        cast(coalesce(by_created_month.leads_open, 0) as bigint) as leads_open,
        cast(coalesce(by_created_month.leads_won, 0) as bigint) as leads_won,
        cast(coalesce(by_created_month.leads_lost, 0) as bigint) as leads_lost,
        {{ safe_divide('by_created_month.leads_won', 'by_created_month.leads_assigned') }}
            as win_rate,
        {{ money('coalesce(by_created_month.revenue, 0)') }} as revenue,
        {{ money(safe_divide('by_created_month.revenue', 'by_created_month.leads_won')) }}
            as aov,
        cast(by_created_month.median_sales_cycle_days as double precision)
            as median_sales_cycle_days,
        cast(coalesce(by_won_month.won_closed_in_month, 0) as bigint) as won_closed_in_month,
        {{ money('coalesce(by_won_month.revenue_closed_in_month, 0)') }}
            as revenue_closed_in_month,
        coalesce(months.month_complete, false) as month_complete
    from manager_months
    left join months
        on manager_months.month = months.month
    left join by_created_month
        on manager_months.crm = by_created_month.crm
        and manager_months.account = by_created_month.account
        and manager_months.responsible_user_id = by_created_month.responsible_user_id
        and manager_months.month = by_created_month.month
    left join by_won_month
        on manager_months.crm = by_won_month.crm
        and manager_months.account = by_won_month.account
        and manager_months.responsible_user_id = by_won_month.responsible_user_id
        and manager_months.month = by_won_month.month
    left join users
        on manager_months.crm = users.crm
        and manager_months.account = users.account
        and manager_months.responsible_user_id = users.user_id

)

select * from final
