-- One row per purchase period of an amoCRM buyer: from the buyer's creation, then from each
-- purchase (non-deleted transaction), to the next purchase. expected_purchase_at is the next
-- purchase date amoCRM shows during the period: for past periods one periodicity after the
-- period's start (amoCRM's rule, the value it showed then; the events do not record next-date
-- edits), for the buyer's current period amoCRM's own next_date (which a manager may have set
-- by hand). Periods starting after the as-of date are left out.
with

as_of as (

    select * from {{ ref('int_as_of_date') }}

),

buyers as (

    select account, amocrm_customer_id, periodicity, next_purchase_at, created_at
    from {{ ref('stg_amocrm__customers') }}
    where not is_deleted

),

starts as (

    select account, amocrm_customer_id, created_at as started_at,
           cast(null as bigint) as transaction_id
    from buyers
    union all
    select transactions.account, transactions.amocrm_customer_id, transactions.completed_at,
           transactions.transaction_id
    from {{ ref('stg_amocrm__transactions') }} as transactions
    inner join buyers
        on transactions.account = buyers.account
        and transactions.amocrm_customer_id = buyers.amocrm_customer_id
    where not transactions.is_deleted

),

numbered as (

    select
        starts.*,
        row_number() over (
            partition by account, amocrm_customer_id
            order by started_at, transaction_id nulls first
        ) - 1 as purchases_before,
        lead(started_at) over (
            partition by account, amocrm_customer_id
            order by started_at, transaction_id nulls first
        ) as ended_at
    from starts

),

final as (

    select
        numbered.account,
        numbered.amocrm_customer_id,
        numbered.purchases_before as period_number,
        numbered.transaction_id as started_by_transaction_id,
        numbered.started_at,
        numbered.ended_at,
        case
            when numbered.ended_at is null then buyers.next_purchase_at
            else {{ dbt.dateadd('day', 'buyers.periodicity', 'numbered.started_at') }}
        end as expected_purchase_at,
        cast(case when numbered.ended_at is null then 'crm' else 'periodicity' end
             as {{ dbt.type_string() }}) as expected_basis
    from numbered
    inner join buyers
        on numbered.account = buyers.account
        and numbered.amocrm_customer_id = buyers.amocrm_customer_id
    cross join as_of
    where numbered.started_at < cast(as_of.day_after_as_of_date as timestamp)

)

select * from final
