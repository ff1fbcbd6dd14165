-- Every lead created up to the as-of date (fct_leads) is assigned exactly once (its creation
-- month, its manager), and every lead won by the as-of date closes exactly once: the manager
-- mart adds up to the leads.
with

mart as (

    select
        sum(leads_assigned) as leads_assigned,
        sum(leads_won) as leads_won,
        sum(won_closed_in_month) as won_closed,
        sum(revenue) as revenue,
        sum(revenue_closed_in_month) as revenue_closed
    from {{ ref('fct_manager_performance_monthly') }}

),

leads as (

    select
        (select count(*) from {{ ref('fct_leads') }}) as leads,
        sum(case when outcome = 'won' then 1 else 0 end) as leads_won,
        {{ money("sum(case when outcome = 'won' then amount else 0 end)") }} as revenue
    from {{ ref('int_lead_outcomes') }}

)

select mart.*, leads.*
from mart
cross join leads
where mart.leads_assigned <> leads.leads
    or mart.leads_won <> leads.leads_won
    or mart.won_closed <> leads.leads_won
    or mart.revenue <> leads.revenue
    or mart.revenue_closed <> leads.revenue
